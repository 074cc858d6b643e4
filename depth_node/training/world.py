"""A diverse synthetic world to train students in: every seed draws its own light, air and pose.

Today's training streets (:func:`depth_node.training.data.synthetic_samples`) all share one
sun, one exposure, one rig and one scene kind, and the student trained on them fails under a
low sun, against the light, in fog or from a raised camera. :func:`draw_world` turns a training
seed into a point of the world's axes (:mod:`depth_node.sim.world`), deterministically:

* scene kind: today's street, an open road, a street under dense trees, a parking lot;
* sun: elevation 3-70 deg (low suns more likely), any azimuth (behind, beside, in front);
* sensor: exposure from dusk (0.2, with photon and read noise) to bright (3), sometimes mono;
* air: fog with a visibility of 40-600 m;
* camera: height 1.2-3.0 m, pitch -3 (up) to 8 (down) deg, horizontal field of view 25-115 deg.

Each axis keeps today's value with a fixed probability (:data:`KEEP_TODAY`), and a share of
the seeds (:data:`TODAY_SHARE`) is today's world exactly, so a student fine-tuned on the
diverse world still sees the streets it was made for. :func:`diverse_samples` renders frames
of the drawn worlds with exact labels, as :func:`synthetic_samples` does for today's, and
refuses the seeds that the evaluations hold out (:data:`HELD_OUT_SEEDS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from depth_node.core.errors import ConfigError
from depth_node.offline.scenarios import CALIBRATION_SEEDS, EVALUATION_SEEDS
from depth_node.sim.world import Conditions, RigSpec, SimRig
from depth_node.training.data import inverse_depth, Sample

__all__ = ['DEFAULT_DIVERSE_PER_SEED', 'DEFAULT_DIVERSE_SEEDS', 'HELD_OUT_SEEDS', 'KEEP_TODAY',
           'SCENE_WEIGHTS', 'TODAY_SHARE', 'WorldDraw', 'check_training_seeds',
           'diverse_samples', 'draw_world']

#: Seeds the evaluations keep apart: the student report's streets, the scenario table's, the
#: uncertainty calibration's and the training validation's.
HELD_OUT_SEEDS: frozenset[int] = frozenset(
    (*range(500, 506), *EVALUATION_SEEDS, *CALIBRATION_SEEDS, 1000, 1001))

#: Training seeds of ``train --world diverse`` (6 frames each: 960 frames, as today's recipe).
DEFAULT_DIVERSE_SEEDS = '1-160'
DEFAULT_DIVERSE_PER_SEED = 6

#: Share of seeds that are today's world exactly (street, today's sun, rig and sensor).
TODAY_SHARE = 0.2

#: Probability that a drawn world keeps today's value of each axis.
KEEP_TODAY = {'sun': 0.25, 'exposure': 0.5, 'fog': 0.85, 'mono': 0.95, 'height': 0.4,
              'pitch': 0.5, 'lens': 0.4}

#: Scene kinds and their weights.
SCENE_WEIGHTS = {'street': 0.4, 'open_road': 0.2, 'dense_trees': 0.2, 'parking_lot': 0.2}

_STREAM = 0x5EED  # the draw's random stream, apart from the street layout's


@dataclass(frozen=True)
class WorldDraw:
    """The world of one training seed: its rig (image size included) and its conditions."""

    seed: int
    spec: RigSpec
    conditions: Conditions

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view of the camera (deg)."""
        cam = self.spec.camera()
        return math.degrees(2 * math.atan(cam.width / 2 / cam.fx))

    def describe(self) -> str:
        """One line: the axes that differ from today's world."""
        c, s = self.conditions, self.spec
        parts = [s.scene]
        if c.sun_changed:
            parts.append(f'sun {c.elevation_deg:.0f}/{c.azimuth_deg:.0f} deg')
        if c.exposure != 1.0:
            parts.append(f'exposure {c.exposure:.2f}')
        if c.photon_noise or c.read_noise:
            parts.append(f'noise {c.photon_noise:.3f}/{c.read_noise:.4f}')
        if c.foggy:
            parts.append(f'fog {c.fog_visibility_m:.0f} m')
        if c.mono:
            parts.append('mono')
        if s.camera_height_m != RigSpec.camera_height_m:
            parts.append(f'height {s.camera_height_m:.2f} m')
        if s.camera_pitch_deg:
            parts.append(f'pitch {s.camera_pitch_deg:.1f} deg')
        if s.focal_px is not None:
            parts.append(f'hfov {self.hfov_deg:.0f} deg')
        return ', '.join(parts)


def draw_world(seed: int, width: int = 320, height: int = 240,
               length: float = 250.0) -> WorldDraw:
    """The world of training seed ``seed`` (a function of the seed alone; module docstring)."""
    rng = np.random.default_rng([int(seed), _STREAM])
    spec = RigSpec(width=width, height=height, length=length)
    if rng.random() < TODAY_SHARE:
        return WorldDraw(int(seed), spec, Conditions())
    keep = {axis: rng.random() < p for axis, p in KEEP_TODAY.items()}
    kinds = list(SCENE_WEIGHTS)
    weights = np.array([SCENE_WEIGHTS[k] for k in kinds])
    scene = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    sun = {}
    if not keep['sun']:
        sun = dict(sun_elevation_deg=3.0 + 67.0 * float(rng.random()) ** 1.5,
                   sun_azimuth_deg=float(rng.uniform(-180.0, 180.0)))
    sensor = {}
    if not keep['exposure']:
        kind = rng.random()
        if kind < 0.4:  # dusk: dark and noisy
            sensor = dict(exposure=float(rng.uniform(0.2, 0.5)),
                          photon_noise=float(rng.uniform(0.01, 0.04)),
                          read_noise=float(rng.uniform(0.002, 0.006)))
        elif kind < 0.6:  # over-exposed
            sensor = dict(exposure=float(rng.uniform(1.5, 3.0)))
        else:
            sensor = dict(exposure=float(rng.uniform(0.6, 1.4)),
                          photon_noise=float(rng.uniform(0.0, 0.02)))
    fog = {}
    if not keep['fog']:
        fog = dict(fog_visibility_m=float(math.exp(rng.uniform(math.log(40), math.log(600)))))
    conditions = Conditions(**sun, **sensor, **fog, mono=not keep['mono'])
    rig = dict(scene=scene)
    if not keep['height']:
        rig['camera_height_m'] = float(rng.uniform(1.2, 3.0))
    if not keep['pitch']:
        rig['camera_pitch_deg'] = float(rng.uniform(-3.0, 8.0))
    if not keep['lens']:
        hfov = math.exp(rng.uniform(math.log(25.0), math.log(115.0)))
        rig['focal_px'] = (width / 2) / math.tan(math.radians(hfov) / 2)
    return WorldDraw(int(seed), RigSpec(width=width, height=height, length=length, **rig),
                     conditions)


def check_training_seeds(seeds: Sequence[int]) -> None:
    """Raise ConfigError when a seed is one the evaluations hold out (:data:`HELD_OUT_SEEDS`)."""
    bad = sorted(set(int(s) for s in seeds) & HELD_OUT_SEEDS)
    if bad:
        raise ConfigError('synthetic_seeds', 'must leave out the held-out seeds 500-505, '
                          '700-702, 900-905 and 1000-1001 (report, evaluation, calibration, '
                          'validation)', ','.join(map(str, bad)))


def diverse_samples(seeds: Sequence[int], per_seed: int, width: int = 320, height: int = 240,
                    speed: float = 8.0, span: tuple[float, float] = (0.0, 150.0),
                    shuffle_seed: int = 0) -> Iterator[Sample]:
    """Frames of the diverse world, ``per_seed`` from the world of each seed, exact labels.

    As :func:`depth_node.training.data.synthetic_samples` (places uniform over ``span`` metres
    of drive, the sky infinitely far), each seed in its own :func:`draw_world` world; sensor
    noise is drawn per frame. Raises ConfigError for a held-out seed.
    """
    if per_seed < 1:
        raise ValueError(f'per_seed must be >= 1, got {per_seed}')
    check_training_seeds(seeds)
    for seed in seeds:
        world = draw_world(int(seed), width, height, length=span[1] + 120.0)
        rig = SimRig.build(world.spec, world.conditions, int(seed))
        rng = np.random.default_rng([int(shuffle_seed), int(seed)])
        for i, z in enumerate(np.sort(rng.uniform(span[0], span[1], per_seed))):
            cam = rig.render(float(z) / speed, speed, seed=int(seed) * 1000 + i)
            yield Sample(cam.rgb, inverse_depth(cam.depth, sky_is_far=True), None,
                         f'diverse seed {seed} z={z:.1f} m ({world.describe()})')
