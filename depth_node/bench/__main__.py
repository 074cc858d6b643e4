"""``python -m depth_node.bench <name> [options]``: the ``benchmark`` entry point."""

import sys

from depth_node.bench.cli import main

sys.exit(main())
