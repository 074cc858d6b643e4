"""Shared test set-up: the repository root on sys.path (for tiny_models and helpers)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
