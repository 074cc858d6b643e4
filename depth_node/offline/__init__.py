"""Offline: bag reading and writing, evaluation and reports (never imported by the node)."""
