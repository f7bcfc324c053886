"""Sphinx configuration for the notifyhub manual (Markdown sources read by MyST).

Build: ``pip install sphinx myst-parser && sphinx-build -b html docs docs/_build/html``.
"""
project = "notifyhub"
author = "notifyhub maintainers"
release = "0.1.0"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
html_theme = "alabaster"
