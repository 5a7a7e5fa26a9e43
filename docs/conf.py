"""Sphinx configuration of prebake's docs: ``make docs`` builds them into docs/_build/html, warnings as errors.

Why Sphinx + MyST + furo: the API reference comes from the docstrings with autodoc, so an option is
described once, where the code is, and the reference cannot drift from it; MyST keeps the pages in
Markdown like the README, so text moves between the two unchanged and tests/test_docs.py runs their
code blocks the way tests/test_readme.py runs the README's; furo is a plain, readable theme that needs
no configuration. (MkDocs Material also reads Markdown, but its API reference is a plugin over a
second docstring parser; Sphinx's autodoc and napoleon read prebake's Google-style docstrings as they are.)

Two kinds of page are written at build time, never by hand: the API reference (docs/gen_api.py, from
each public module's ``__all__``) and the tables of measured results (docs/gen_results.py, from
benchmarks/results/*.json), so the numbers live in the JSON only.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT / "src"), str(DOCS)]

import gen_api  # noqa: E402  (docs/ is on the path only from here)
import gen_results  # noqa: E402
from sphinx.application import Sphinx  # noqa: E402
from sphinx.util import logging  # noqa: E402

import prebake  # noqa: E402

logger = logging.getLogger(__name__)

project = "prebake"
author = "the prebake authors"
copyright = "the prebake authors"  # noqa: A001  (Sphinx's name for it)
release = version = prebake.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated"]  # _generated: results tables, included by pages
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"prebake {release}"

autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # prebake's own text only: a framework's inherited docstrings use its own roles
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# the integrations' frameworks are extras: where one is not installed its module still documents
autodoc_mock_imports = [m for m in ("lightning", "datasets", "torchdata", "accelerate", "monai")
                        if importlib.util.find_spec(m) is None]


def _no_builtin_docstrings(app: object, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """A constant (a tuple, a type alias) has no docstring of its own: show its value, not tuple's or dict's help."""
    owner = getattr(obj, "__origin__", type(obj))  # a type alias such as dict[str, Tensor] shows dict's help
    builtin = (owner.__doc__ or "").strip().split("\n")[0].strip()
    if what in ("data", "attribute") and lines and builtin and lines[0].strip() == builtin:
        lines.clear()


def _generate(app: object) -> None:
    """The API pages and the results tables, before Sphinx reads the pages; a results file that does not fit
    its table is a warning, so ``make docs`` (-W) fails until docs/results_tables.py follows the new schema."""
    list(gen_api.write(DOCS / "api"))
    problems: list[str] = []
    gen_results.write_pages(ROOT / "benchmarks" / "results", DOCS / "_generated", problems)
    for problem in problems:
        logger.warning(problem)


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-docstring", _no_builtin_docstrings)
    app.connect("builder-inited", _generate)
