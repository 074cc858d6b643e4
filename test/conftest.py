"""Shared test set-up: the repository root on sys.path (for tiny_models and helpers), and a
cache folder of the test session's own for what the package caches per machine (the
estimator's measured threads and precision), so that tests neither read nor write the user's
``~/.cache``; node processes started by the tests inherit it."""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ['XDG_CACHE_HOME'] = tempfile.mkdtemp(prefix='depth_node_test_cache_')
