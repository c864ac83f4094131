"""The report templates, CSS and JavaScript (package data, inlined into every page at build time)."""
