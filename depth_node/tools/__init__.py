"""Tools layer: command-line entry points (benchmark, demo, ...), thin over the layers above."""
