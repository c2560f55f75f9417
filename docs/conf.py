"""Sphinx configuration of the atm-step documentation.

Build (warnings are errors, as in the test suite)::

    python -m pip install -e ".[docs]"
    python -m sphinx -W -b html docs docs/_build/html

The markdown pages are the narrative chapters (MyST); the API reference is built
from the numpydoc docstrings (autodoc + numpydoc).
"""

import os
import sys

# the package of this checkout, even where another copy is installed
sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "True")

project = "atm-step"
author = "atm-step developers"
copyright = "atm-step developers, BSD-3-Clause"  # noqa: A001 - Sphinx's name
import atm_step  # noqa: E402

release = atm_step.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: the markdown chapters use tables, dollar maths and heading anchors
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# numpydoc renders the docstrings; class members are listed by autodoc itself
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": False}
# single backticks in docstrings are code (the package's docstrings use them that way)
default_role = "code"

html_theme = "alabaster"
html_title = f"atm-step {release}"
html_static_path = []
