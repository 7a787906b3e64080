"""The docs site: Sphinx with MyST (the pages stay Markdown, as GitHub shows
them) and furo; the API reference from the docstrings (autodoc).

    python -m pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs build/docs
"""

project = "pysock"
author = "the pysock authors"
copyright = "the pysock authors, MIT licensed"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["bench.json"]
root_doc = "index"

html_theme = "furo"
html_title = "pysock"

# Links to a page's sections (cli.md#the-timestamp-server) as GitHub writes them.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}
autoclass_content = "both"  # the class docstring, then __init__'s (its parameters)
