"""Synthetic scenes with exact depth (numpy only; same layer as core).

Used by the demo, the tests and the accuracy harness: no dataset can be downloaded, so the
project renders its own camera images, exact depth and LiDAR sweeps. ``scene`` gathers the
public names of ``geometry`` (primitives, ray casting), ``shading`` (textures), ``street``
(the seeded street and its kinds), ``camera`` and ``lidar`` (the sensors); ``conditions``
(sun, glare, fog, exposure, sensor noise) and ``rigs`` (lens, camera pose, LiDAR presets,
calibration error) are the axes of the wider world, ``world`` gathers them in one import;
``frames`` renders drives (``SimRig.build``); ``oracles`` turns exact depth into model-like
relative predictions.
"""
