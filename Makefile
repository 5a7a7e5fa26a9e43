# Two commands on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test bench faults clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "creating $(VENV) and installing prebake with its dependencies (torch, numpy, Pillow, ...): about a minute on a first run"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@echo "installed into $(VENV); use it with: source $(VENV)/bin/activate"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/prebake demo --workdir prebake-demo

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/bake.py

faults: $(VENV)/.installed
	$(PY) benchmarks/faults.py

clean:
	rm -rf prebake-demo .pytest_cache .hypothesis
