"""Benchmarks: each prints a table (``benchmark <name>``); never imported by runtime code."""
