"""Synthetic scenes with exact depth (numpy only; same layer as core).

Used by the demo, the tests and the accuracy harness: no dataset can be downloaded, so the
project renders its own camera images, exact depth and LiDAR sweeps.
"""
