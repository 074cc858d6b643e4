"""Light, air and sensor of a synthetic drive: sun, veiling glare, fog, exposure, noise, mono.

:class:`Conditions` holds the knobs; all default to today's renders (bit-identical: the shading
of :meth:`depth_node.sim.street.Scene.shade` is then used as it is). Otherwise the camera image
is made in this order (:func:`develop`), per pixel along world direction ``d``:

1. **Radiance.** The shaded value ``v`` in [0, 1] is today's display value at unit exposure;
   its linear radiance is ``L0 = v ** GAMMA`` (``GAMMA`` = 2.2, the fixed tone curve).
   The sun (elevation ``e``, azimuth ``a`` from the driving direction +z, positive to the right,
   +x) lights surfaces with a colour that reddens and dims with the air mass
   ``m = 1 / (sin e + 0.50572 (e + 6.07995 deg) ** -1.6364)`` (Kasten & Young 1989):
   ``c = exp(-tau * (m - m0))`` per channel (``tau`` = 0.02, 0.04, 0.09 for R, G, B; ``m0`` the
   air mass of today's sun, so today's sun is white); no direct light when ``e < 0``.
2. **Sky near the sun** (with a sun set by angle; today's renders have neither this nor the
   glare, so the other axes change nothing else). Sky pixels gain an aureole
   ``0.5 c exp(-theta / 10 deg)`` and the sun's disc (``theta`` < 0.27 deg) saturates;
   ``theta`` is the angle between ``d`` and the sun.
3. **Fog** (Koschmieder): ``L = L0 t + A (1 - t)``, ``t = exp(-3.912 s / V)`` with ``s`` the
   ray distance (m), ``V`` the meteorological visibility (m, contrast 2 % at ``V``) and ``A``
   the airlight (linear ``fog_color ** GAMMA``); sky (``s`` infinite) becomes airlight.
4. **Veiling glare** (lens scatter): when the sun is above the horizon and no primitive hides
   it from the camera, every pixel gains
   ``glare * c * T_sun * (2 / (theta_deg ** 2 + 4) + 0.03 max(cos phi, 0) ** 2)``: a
   Stiles-Holladay-like ``1 / theta ** 2`` term strongest at the sun's image position plus a
   flat veil that grows as the sun comes in front of the lens (``phi``: sun to optical axis);
   ``T_sun = exp(-3.912 H / (V max(sin e, 0.05)))`` is the sun's transmission through a fog
   layer ``H`` = 100 m deep (1 in clear air).
5. **Sensor.** ``E = exposure * L`` (0: black; large: saturated), then photon (signal-dependent)
   and read noise, ``E + sqrt(photon_noise ** 2 E + read_noise ** 2) N(0, 1)`` (units of full
   scale, seeded), clipped to [0, 1], encoded ``E ** (1 / GAMMA)`` and quantised to 8 bits.
6. **Mono**: luminance (ITU-R BT.601 weights) replicated in the three channels.

The LiDAR in fog (:func:`fog_keep`, :func:`fog_clutter`): a return of reflectivity ``rho`` at
range ``r`` has ``SNR = rho exp(-2 * 3.912 r / V) / r ** 2`` (two-way attenuation), compared with
the threshold ``rho_min / R_max ** 2`` of the weakest material (``rho_min`` = 0.05) at the
sensor's maximum range, so clear air keeps every return it kept before. The return is kept
with probability ``clip(1 + ln(SNR / threshold) / ln 4, 0, 1)`` (certain above the threshold,
none below a quarter of it); its intensity falls by ``exp(-2 * 3.912 r / V)``. With
``fog_backscatter`` > 0 that share of the beams also returns from the fog itself at a range
uniform in 2-10 m, when nothing nearer was hit (first return).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only (street imports shading, not this)
    from depth_node.sim.street import Scene

GAMMA = 2.2
KOSCHMIEDER = 3.912  # -ln(0.02): the contrast threshold that defines visibility
#: Today's sun (towards the sun, world frame x right, y down, z forward): Scene.sun's default.
DEFAULT_SUN = (-0.35, -0.8, 0.5)
DEFAULT_SUN_ELEVATION_DEG = math.degrees(math.asin(0.8 / math.sqrt(0.35 ** 2 + 0.8 ** 2
                                                                   + 0.5 ** 2)))  # 52.66
DEFAULT_SUN_AZIMUTH_DEG = math.degrees(math.atan2(-0.35, 0.5))  # -34.99: left of ahead
_TAU = np.array([0.02, 0.04, 0.09])  # per-air-mass optical depth, R, G, B
_FOG_LAYER_M = 100.0
_REFLECTIVITY_MIN = 0.05
_SOFT = math.log(4.0)
_SUN_RADIUS_DEG = 0.27
BACKSCATTER_RANGE_M = (2.0, 10.0)


def _air_mass(elevation_deg: float) -> float:
    """Relative optical air mass (Kasten & Young 1989), 1 at the zenith."""
    e = max(elevation_deg, 0.0)
    return 1.0 / (math.sin(math.radians(e)) + 0.50572 * (e + 6.07995) ** -1.6364)


def sun_direction(elevation_deg: float, azimuth_deg: float) -> tuple[float, float, float]:
    """Unit vector towards the sun in the world frame (x right, y down, z forward)."""
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    return (math.cos(e) * math.sin(a), -math.sin(e), math.cos(e) * math.cos(a))


def sun_color(elevation_deg: float) -> tuple[float, float, float]:
    """Relative colour and strength of direct sunlight, white at today's elevation."""
    if elevation_deg < 0:
        return (0.0, 0.0, 0.0)
    dm = _air_mass(elevation_deg) - _air_mass(DEFAULT_SUN_ELEVATION_DEG)
    return tuple(float(v) for v in np.exp(-_TAU * dm))  # type: ignore[return-value]


@dataclass(frozen=True)
class Conditions:
    """Light, air and sensor of a drive; the defaults give today's images and sweeps.

    Angles in degrees, ``fog_visibility_m`` in metres (``inf``: clear), noise in units of the
    sensor's full scale (see the module docstring for every formula).
    """

    sun_elevation_deg: Optional[float] = None  # None: today's sun, 52.7 deg up
    sun_azimuth_deg: Optional[float] = None  # None: today's, 35 deg left of ahead (-35)
    glare: float = 1.0  # strength of the veiling glare (0: none)
    exposure: float = 1.0  # multiplier on radiance: 0.3 dusk, 0 blind, >> 1 saturated
    photon_noise: float = 0.0  # sigma of shot noise at full scale (sigma^2 = p^2 * signal)
    read_noise: float = 0.0  # sigma of signal-independent noise
    fog_visibility_m: float = math.inf  # meteorological visibility V
    fog_color: tuple[float, float, float] = (0.8, 0.81, 0.83)  # airlight, display values
    fog_backscatter: float = 0.0  # share of LiDAR beams returning from the fog (in fog only)
    mono: bool = False  # luminance in all three channels

    def __post_init__(self) -> None:
        e = self.sun_elevation_deg
        if e is not None and not -90 <= e <= 90:
            raise ValueError(f'Conditions.sun_elevation_deg must be in [-90, 90], got {e}')
        a = self.sun_azimuth_deg
        if a is not None and not np.isfinite(a):
            raise ValueError(f'Conditions.sun_azimuth_deg must be finite, got {a}')
        for name in ('glare', 'exposure', 'photon_noise', 'read_noise'):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f'Conditions.{name} must be finite and >= 0, got {v}')
        if not self.fog_visibility_m > 0:
            raise ValueError(f'Conditions.fog_visibility_m must be > 0 m (inf: clear), got '
                             f'{self.fog_visibility_m}')
        if not 0 <= self.fog_backscatter < 1:
            raise ValueError(f'Conditions.fog_backscatter must be in [0, 1), got '
                             f'{self.fog_backscatter}')
        if len(self.fog_color) != 3 or not all(0 <= c <= 1 for c in self.fog_color):
            raise ValueError(f'Conditions.fog_color must be 3 values in [0, 1], got '
                             f'{self.fog_color}')

    @property
    def sun_changed(self) -> bool:
        """Whether the sun differs from today's."""
        return self.sun_elevation_deg is not None or self.sun_azimuth_deg is not None

    @property
    def foggy(self) -> bool:
        return bool(np.isfinite(self.fog_visibility_m))

    @property
    def photometric(self) -> bool:
        """Whether the image needs :func:`develop` (anything but mono differs from today)."""
        return (self.sun_changed or self.foggy or self.exposure != 1.0
                or self.photon_noise > 0 or self.read_noise > 0)

    @property
    def elevation_deg(self) -> float:
        e = self.sun_elevation_deg
        return DEFAULT_SUN_ELEVATION_DEG if e is None else float(e)

    @property
    def azimuth_deg(self) -> float:
        a = self.sun_azimuth_deg
        return DEFAULT_SUN_AZIMUTH_DEG if a is None else float(a)

    def sun(self) -> tuple[float, float, float]:
        """Unit vector towards the sun (world frame); today's exact vector by default."""
        if not self.sun_changed:
            return DEFAULT_SUN
        return sun_direction(self.elevation_deg, self.azimuth_deg)


#: Named conditions for scenario tables: each changes one axis from ``clear``.
CONDITIONS = {
    'clear': Conditions(),
    'low_sun': Conditions(sun_elevation_deg=8.0),
    'backlight': Conditions(sun_elevation_deg=6.0, sun_azimuth_deg=0.0),
    'mirrored_sun': Conditions(sun_azimuth_deg=-DEFAULT_SUN_AZIMUTH_DEG),
    'dusk': Conditions(exposure=0.3, photon_noise=0.03, read_noise=0.004),
    'blind': Conditions(exposure=0.0),
    'saturated': Conditions(exposure=20.0),
    'light_fog': Conditions(fog_visibility_m=300.0, fog_backscatter=0.005),
    'fog': Conditions(fog_visibility_m=80.0, fog_backscatter=0.03),
    'mono': Conditions(mono=True),
}


def _angle_to_sun_deg(dirs: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Angles [N] float32 (deg) between ``dirs`` [N, 3] and the unit vector ``sun``."""
    d = np.asarray(dirs, np.float32)
    cos = d @ sun.astype(np.float32) / np.sqrt(np.einsum('ij,ij->i', d, d))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _sun_visible(scene: 'Scene', origin: np.ndarray, sun: np.ndarray, time: float) -> bool:
    _, hit = scene.raycast(origin, sun[None, :].astype(np.float32), time)
    return bool(hit[0] < 0)


def develop(rgb: np.ndarray, dirs: np.ndarray, distance: np.ndarray, scene: 'Scene',
            origin: np.ndarray, time: float, conditions: Conditions, seed: int = 0,
            axis: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Display values [N, 3] float32 in [0, 1] of shaded values under ``conditions``.

    ``rgb`` [N, 3]: the scene's shading (display values at unit exposure); ``dirs`` [N, 3]
    world ray directions; ``distance`` [N] metres along the ray (``inf`` for sky); ``axis``
    the camera's optical axis (world). Steps 2-5 of the module docstring; ``seed`` draws the
    sensor noise.
    """
    c = conditions
    f32 = np.float32
    lin = np.asarray(rgb, f32) ** f32(GAMMA)  # float32 throughout: a 640x480 frame in ms
    sky = ~np.isfinite(distance)
    sun = np.asarray(scene.sun, np.float64)
    sun = sun / np.linalg.norm(sun)
    color = np.asarray(getattr(scene, 'sun_color', (1.0, 1.0, 1.0)), f32)
    elevation = math.degrees(math.asin(float(np.clip(-sun[1], -1, 1))))
    theta = None
    if c.sun_changed and elevation > -_SUN_RADIUS_DEG and color.any():
        theta = _angle_to_sun_deg(dirs, sun)
        if sky.any():
            glow = f32(0.5) * np.exp(theta[sky] / f32(-10.0))[:, None] * color
            glow[theta[sky] < _SUN_RADIUS_DEG] = 50.0
            lin[sky] += glow
    if c.foggy:
        t = np.exp(np.asarray(distance, f32) * f32(-KOSCHMIEDER / c.fog_visibility_m))[:, None]
        airlight = np.asarray(c.fog_color, f32) ** f32(GAMMA)
        lin = lin * t + airlight * (f32(1.0) - t)
    if theta is not None and elevation > 0 and c.glare > 0 \
            and _sun_visible(scene, origin, sun, time):
        t_sun = 1.0
        if c.foggy:
            t_sun = math.exp(-KOSCHMIEDER * _FOG_LAYER_M
                             / (c.fog_visibility_m * max(-sun[1], 0.05)))
        ax = np.asarray(axis, np.float64)
        flat = 0.03 * max(float(sun @ ax) / np.linalg.norm(ax), 0.0) ** 2
        veil = f32(c.glare * t_sun) * (f32(2.0) / (theta * theta + f32(4.0)) + f32(flat))
        lin += veil[:, None] * color
    lin *= f32(c.exposure)
    if c.photon_noise > 0 or c.read_noise > 0:
        rng = np.random.default_rng([seed, 1])
        sigma = np.sqrt(f32(c.photon_noise ** 2) * np.maximum(lin, f32(0.0))
                        + f32(c.read_noise ** 2))
        lin += sigma * rng.standard_normal(lin.shape, dtype=f32)
    return np.clip(lin, f32(0.0), f32(1.0)) ** f32(1.0 / GAMMA)


def to_mono(rgb: np.ndarray) -> np.ndarray:
    """Grey image [H, W, 3] uint8: BT.601 luminance of ``rgb`` [H, W, 3] uint8 in each channel."""
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(np.clip(y + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def fog_transmission(distance: np.ndarray, visibility_m: float) -> np.ndarray:
    """One-way transmission ``exp(-3.912 s / V)`` over ``distance`` [N] metres."""
    return np.exp(-KOSCHMIEDER * np.asarray(distance, np.float64) / visibility_m)


def fog_keep(ranges: np.ndarray, reflectivity: np.ndarray, max_range: float,
             visibility_m: float, rng: np.random.Generator) -> np.ndarray:
    """Mask [N] of LiDAR returns that survive two-way fog attenuation (module docstring)."""
    r = np.maximum(np.asarray(ranges, np.float64), 1e-3)
    rho = np.maximum(np.asarray(reflectivity, np.float64), 1e-6)
    snr = rho * fog_transmission(r, visibility_m) ** 2 / r ** 2
    threshold = _REFLECTIVITY_MIN / max_range ** 2
    p = np.clip(1.0 + np.log(snr / threshold) / _SOFT, 0.0, 1.0)
    return rng.random(r.shape) < p


def fog_clutter(beams: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Ranges [beams] of fog backscatter returns (m; NaN where a beam has none)."""
    out = np.full(beams, np.nan)
    if share > 0:
        hit = rng.random(beams) < share
        out[hit] = rng.uniform(*BACKSCATTER_RANGE_M, size=int(hit.sum()))
    return out
