"""Sphinx configuration of the hpcfutures documentation (built by scripts/docs.sh).

Sphinx + MyST-NB: the pages are Markdown; those with ``file_format: mystnb`` are
notebooks whose ``{code-cell}`` blocks run in a Jupyter kernel at every build, so the
output shown is real and a stale example fails the build (warnings are errors, a cell that
raises is an error). The API reference comes from the docstrings (autodoc + napoleon).
"""

import os
import sys

from importlib.metadata import version as _version

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))  # document this checkout

project = "hpcfutures"
author = "the hpcfutures developers"
copyright = "the hpcfutures developers"
release = _version("hpcfutures")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "jupyter_execute"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}

# -- MyST / MyST-NB ---------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "force"  # run every notebook page at every build: no stale output
nb_execution_raise_on_error = True  # a cell that raises fails the build
nb_execution_show_tb = True
nb_execution_timeout = 120  # seconds per cell
nb_execution_in_temp = True  # cache folders and pictures the examples write stay out of docs/
nb_merge_streams = True

# -- autodoc ----------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
intersphinx_mapping = {}  # no network at build time

# -- HTML -------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"hpcfutures {release}"
html_static_path = ["_static"]
