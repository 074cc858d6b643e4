"""Command-line entry points, thin over the layers below (see setup.py console_scripts)."""
