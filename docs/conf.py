"""Sphinx configuration for the vdinspect user guide (built offline, warnings as errors).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # autodoc imports the package from this checkout

import vdinspect  # noqa: E402

project = "vdinspect"
author = "the vdinspect authors"
copyright = "the vdinspect authors"
release = version = vdinspect.__version__

extensions = [
    "myst_nb",  # Markdown pages (MyST) and notebooks
    "sphinx.ext.autodoc",
]

# Notebooks are shown as committed (outputs stripped), never executed by the docs build.
nb_execution_mode = "off"
# The notebooks live beside the package, not under docs/: copy them in at build time
# (see _copy_notebooks below) so the guide can link them without duplicating them in git.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
# No network: no intersphinx, no remote images.

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"vdinspect {release}"
html_static_path: list[str] = []


def _copy_notebooks(app) -> None:
    """Copy ``notebooks/*.ipynb`` into ``docs/notebooks/`` (ignored by git) for the build."""
    src = ROOT / "notebooks"
    dst = Path(app.srcdir) / "notebooks"
    dst.mkdir(exist_ok=True)
    for nb in sorted(src.glob("*.ipynb")):
        data = nb.read_bytes()
        target = dst / nb.name
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
    for stale in dst.glob("*.ipynb"):
        if not (src / stale.name).exists():
            stale.unlink()


def _optional_pages(app, docname: str, source: list[str]) -> None:
    """Leave a page that is not written yet (``benchmarks``) out of the index toctree."""
    if docname != "index":
        return
    for page in ("benchmarks", "benchmarks-howto"):
        if not (Path(app.srcdir) / f"{page}.md").exists():
            source[0] = "\n".join(line for line in source[0].split("\n") if line.strip() != page)


# Links that point out of docs/ for readers on a Git host, and the page that shows the same
# file in the guide.
_OUTSIDE_LINKS = {"](../benchmarks/README.md)": "](benchmarks-howto.md)"}


def _outside_links(app, docname: str, source: list[str]) -> None:
    """Point links to files outside docs/ at the guide's page that includes them."""
    for old, new in _OUTSIDE_LINKS.items():
        source[0] = source[0].replace(old, new)


def setup(app):
    app.connect("source-read", _outside_links)
    app.connect("builder-inited", _copy_notebooks)
    app.connect("source-read", _optional_pages)
