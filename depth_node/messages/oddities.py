"""Legal but odd inputs: what the node warns about (once per kind and period) and still uses.

The readers (:mod:`depth_node.messages.readers`) refuse what breaks a message's layout rules;
these checks name what is valid but almost certainly not what the sender meant, so that the
node does not accept it without a word:

* ``camera_info``: focal lengths that give a field of view of ~180 deg or ~0 deg (``fx``
  1e-300), a ROI reaching outside the sensor, a stereo baseline ``-P[0,3] / fx`` of more than
  100 m (``P[0,3]`` 1e12);
* every input: an empty ``header.frame_id`` (the outputs carry the image's, and tf / rviz
  cannot place them);
* ``PointCloud2``: a field name given twice (the first is used, as ``sensor_msgs_py`` does).

Each function returns ``[(kind, text), ...]``: ``kind`` keys the caller's log throttle.
"""

from __future__ import annotations

import math
from typing import Any

#: Beyond these horizontal / vertical fields of view a focal length is called odd, degrees.
FOV_RANGE_DEG = (0.01, 179.0)
#: A stereo baseline beyond this is called odd, metres.
MAX_BASELINE_M = 100.0


def _fov_deg(size: float, focal: float) -> float:
    return math.degrees(2.0 * math.atan2(size / 2.0, focal))


def camera_info_oddities(msg: Any) -> list[tuple[str, str]]:
    """Odd but valid values of a ``sensor_msgs/CameraInfo`` the readers accepted."""
    out = []
    width, height = int(msg.width), int(msg.height)
    p, k = list(msg.p), list(msg.k)
    use_p = len(p) == 12 and (p[0] != 0 or p[5] != 0)
    fx, fy = (float(p[0]), float(p[5])) if use_p else \
        (float(k[0]), float(k[4])) if len(k) == 9 else (0.0, 0.0)
    field = 'p' if use_p else 'k'
    for name, focal, size in (('fx', fx, width), ('fy', fy, height)):
        if focal > 0 and size > 0:
            fov = _fov_deg(size, focal)
            if not FOV_RANGE_DEG[0] <= fov <= FOV_RANGE_DEG[1]:
                out.append((f'camera_info_{name}', f'CameraInfo.{field} {name} {focal:g} gives '
                            f'the {size} px side a field of view of {fov:.3g} deg: check the '
                            'calibration'))
    roi = msg.roi
    x0, y0, rw, rh = (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height))
    if (rw > 0 and rh > 0) and (x0 + rw > width or y0 + rh > height):
        out.append(('camera_info_roi', f'CameraInfo.roi (x {x0}, y {y0}, {rw}x{rh}) reaches '
                    f'outside the {width}x{height} sensor'))
    tx = float(p[3]) if use_p else 0.0
    if fx > 0 and abs(tx) > MAX_BASELINE_M * fx:
        baseline = abs(tx) / fx if abs(tx) < fx * 1e300 else math.inf
        out.append(('camera_info_baseline', f'CameraInfo.p[3] {tx:g} is a stereo baseline of '
                    f'{baseline:.3g} m (-p[3]/fx): only the second camera of a stereo pair '
                    'has p[3] != 0'))
    out += frame_id_oddities(msg, 'CameraInfo')
    return out


def frame_id_oddities(msg: Any, what: str) -> list[tuple[str, str]]:
    """An empty ``header.frame_id`` of a message of type ``what`` (Image, PointCloud2, ...)."""
    if str(msg.header.frame_id).strip('/ '):
        return []
    extra = (': the outputs carry it too, and tf / rviz cannot place them' if what == 'Image'
             else '')
    return [(f'{what}_frame_id', f'{what}.header.frame_id is empty{extra}')]


def pointcloud2_oddities(msg: Any) -> list[tuple[str, str]]:
    """A field name given twice, an empty frame_id, of a ``sensor_msgs/PointCloud2``."""
    names = [str(f.name) for f in msg.fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    out = frame_id_oddities(msg, 'PointCloud2')
    if twice:
        out.append(('points_fields', f'PointCloud2.fields name {", ".join(twice)} more than '
                    'once: the first of each is used'))
    return out


__all__ = ['camera_info_oddities', 'FOV_RANGE_DEG', 'frame_id_oddities', 'MAX_BASELINE_M',
           'pointcloud2_oddities']
