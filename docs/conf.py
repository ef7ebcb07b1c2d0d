"""Sphinx configuration of the borgstore documentation (the pages in docs/, the API reference
generated from the docstrings).  Build: python -m sphinx -W -b html docs docs/_build/html"""

import borgstore

project = "borgstore"
copyright = "the borgstore developers"
release = version = borgstore.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # "#capabilities"-style links between the pages, as GitHub renders them
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
html_theme = "alabaster"
