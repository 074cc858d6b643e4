"""Test helpers: oracles, tiny models, official reference code, the node live; not for runtime."""
