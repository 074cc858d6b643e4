"""Test helpers: oracles, tiny models, a node in a subprocess; never imported by runtime code."""
