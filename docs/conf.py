"""Sphinx configuration of the sksnn documentation.

Build from the repository root with ``python -m sphinx -W -b html docs docs/_build/html``.
"""

import os
import re
import sys
from pathlib import Path

# One torch thread for the examples: on a machine shared with other jobs, two spinning OpenMP
# threads per operation made a 4 s example take 30 to 50 s. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))  # _gallery_order

import sksnn

# The gallery scripts read this to run at a smaller size than on the command line.
os.environ.setdefault("SKSNN_DOCS_BUDGET", "small")

project = "sksnn"
author = "the sksnn developers"
copyright = "the sksnn developers, BSD-3-Clause"
release = sksnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "**.codeobj.json"]

# Unlabelled code blocks are mostly program output and equations: leave them plain.
highlight_language = "none"

autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # The Dask example starts a cluster of worker processes; the gallery shows it unexecuted.
    "filename_pattern": r"^((?!scaling_out_dask).)*$",
    "within_subsection_order": "_gallery_order.ExampleOrder",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "abort_on_example_error": True,
    "show_memory": False,
    "image_scrapers": ("matplotlib",),
}

# Method entries in the page contents read "fit()", not "SpikingClassifier.fit()".
toc_object_entries_show_parents = "hide"

html_theme = "pydata_sphinx_theme"
html_title = f"sksnn {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
    "header_links_before_dropdown": 7,
}
# Pages without sub-pages get no empty navigation column.
html_sidebars = {"index": [], "theory": [], "changelog": [], "citing": []}
html_show_sourcelink = False


def _unlink_refs(app, what, name, obj, options, lines):
    """sksnn's docstrings cite no labels; docstrings inherited from scikit-learn (``score``)
    and torch (``SpikeFunction.forward``) cite labels of those projects' documentation, which
    is not linked here (no intersphinx: the build needs no network), so show them as text."""
    lines[:] = [re.sub(r":ref:`([^`<]*?)\s*(<[^`]*>)?`", r"``\1``", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _unlink_refs)
