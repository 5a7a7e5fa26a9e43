# Two commands on a fresh machine:  make demo  |  make test
#   make demo: prebake and what the demo needs (torch, numpy, Pillow, xxhash, filelock, tqdm, PyYAML) in .venv:
#              du -sh 994M with the CPU build of torch (torch alone 722M)
#   make test: adds the test extras (pytest, hypothesis, build, scipy, soundfile, nibabel, pydicom, h5py, monai,
#              av, ray, peft, lightning, datasets, torchdata, accelerate) to the same .venv: du -sh 2.1G
# torch comes from PyTorch's CPU wheel index, unless nvidia-smi finds a GPU: then PyPI's default build, which is
# the CUDA one (several GB with its CUDA libraries). Choose another: make demo TORCH_INDEX=https://download.pytorch.org/whl/cu126
# A torch already in .venv is kept. constraints.txt pins the development and CI versions.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)

.PHONY: demo test test-slow docs-test lint docs release-check bench faults faults-quick integrations clean

$(VENV)/.torch:
	@echo "creating $(VENV) with torch ($(or $(TORCH_INDEX),PyPI)): a minute or two on a first run"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch
	touch $@

$(VENV)/.demo: $(VENV)/.torch pyproject.toml constraints.txt
	$(PIP) -e .
	@echo "installed into $(VENV); use it with: source $(VENV)/bin/activate"
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml constraints.txt
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(VENV)/bin/prebake demo --workdir prebake-demo

test: $(VENV)/.installed
	$(PY) -m pytest -m "not release and not docs_pages and not slow"

# the slowest end-to-end tests (benchmarks and examples run as scripts, two-process DDP, a local Ray): .ci/run runs
# them after make test, so that make test stays under 6 minutes
test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow

# every block of the docs pages that train or bake a workload, run as written (.ci/run runs it after make test)
docs-test: $(VENV)/.installed
	$(PY) -m pytest -m docs_pages tests/test_docs.py

# ruff (pyflakes, import order, 120 columns) over the code, mypy over src/
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy

# the docs site into docs/_build/html (Sphinx + MyST + furo: docs/conf.py says why); any warning fails it
docs: $(VENV)/.installed
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

# the built wheel in a fresh venv: prebake demo and the README quickstart, with no checkout on the path
release-check: $(VENV)/.installed
	$(PY) -m pytest tests/test_packaging.py
	$(PY) -m build --outdir dist .

bench: $(VENV)/.installed
	$(PY) benchmarks/bake.py

faults: $(VENV)/.installed
	$(PY) benchmarks/faults.py

# every row of the fault table with a handful of trials (about 25 s); make test runs a few rows and each row's tests
faults-quick: $(VENV)/.installed
	$(PY) benchmarks/faults.py --quick

# the integration tests with their slow ones (a Lightning DDP run stopped and resumed: about a minute)
integrations: $(VENV)/.installed
	PREBAKE_SLOW_INTEGRATIONS=1 $(PY) -m pytest tests/integrations tests/faults/test_integrations.py

clean:
	rm -rf prebake-demo .pytest_cache .hypothesis runs dist build
