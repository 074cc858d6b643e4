"""The beam fill: between one LiDAR beam and the next, the LiDAR's own interpolation.

Step 6 of the fusion (:mod:`depth_node.core.fusion`). In each ``cell``-pixel column band,
consecutive cells with returns at most ``max_gap`` px apart whose depths agree within
``max_step`` (log) are joined linearly in *disparity* down the pixel rows between them; the
bands are interpolated across (a lone band reaches half way to the next). A plane's disparity
is linear in the pixel coordinates, so roads and façades between beams come out exact, and on
the held-out scenarios this beats the filtered field between dense returns in every rig
(docs/benchmarks.md). Across a vertical edge between two bands (their disparities more than
``max_step`` apart) a pixel takes the band nearer the field's depth there
(:func:`depth_node.core.beam_kernels.fill_value`).

* Returns further apart or across a depth step (an object edge, where the network's shape tells
  fore- from background) keep the field, and so do the rows where the network sees something
  more than ``max_nearer`` nearer than its own line between the two returns (an object between
  the beams, e.g. a low obstacle on the road that neither beam hits).
* Below a band's lowest return, when its last joined returns (:data:`LINE_MIN_POINTS` to
  :data:`LINE_POINTS` of them) lie on one line, that line goes on down for ``reach`` px, under
  the same test, until the network's depth steps between rows by more than ``edge_step``: the
  near road under the lowest beam is the same plane as the road the beams hit.
* The frame's own returns decide whether it runs at all (:func:`beam_check`): every beam with
  a joined beam above and below is predicted from those two, once by their line and once by
  the network's shape; when the network's median error is the smaller (a network that knows
  the surfaces between beams), the beam fill is off for the frame.

The passes are compiled (:mod:`depth_node.core.beam_kernels`);
:func:`depth_node.core.fusion_reference.beam_fill_reference` and
:func:`~depth_node.core.fusion_reference.beam_check_reference` are the numpy reference.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from depth_node.core import beam_kernels
from depth_node.core.cell_grid import cell_centres, cell_of, grid_shape


#: The line continued below a band's lowest return: fitted to the chain's last this many
#: control points, and only for a chain of at least the second figure (a dense, straight run
#: of beams down the band, which a 16-beam LiDAR rarely gives), whose RMS distance from the line
#: is within the third (a share of their mean disparity: one plane).
LINE_POINTS, LINE_MIN_POINTS, LINE_TOLERANCE = 12, 8, 0.01


#: Fewer held-out triples than this: the frame cannot tell, and the beam fill runs.
MIN_BEAM_CHECKS = 20
#: The check reads about this many column bands (every k-th: a median needs no more).
BEAM_CHECK_BANDS = 40


def beam_cells(zg: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
               cell: int) -> np.ndarray:
    """Per cell count, row sum, disparity sum of the returns and the network's disparity sum
    at their pixels: [4, gh, gw] float64."""
    h, w = zg.shape
    gh, gw = grid_shape(h, w, cell)
    sums = np.zeros((4, gh, gw))
    beam_kernels.beam_cells(zg, np.ascontiguousarray(u, np.int32),
                            np.ascontiguousarray(v, np.int32),
                            np.ascontiguousarray(z, np.float32), cell_of(h, cell),
                            cell_of(w, cell), sums)
    return sums


def check_stride(bands: int) -> int:
    """Every how many column bands :func:`beam_check` reads (about :data:`BEAM_CHECK_BANDS`)."""
    return max(1, bands // BEAM_CHECK_BANDS)


def beam_check(global_depth: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
               cell: int, max_gap: float, max_step: float,
               sums: Optional[np.ndarray] = None) -> tuple[float, float, int]:
    """Which predicts a beam from the beams above and below it better on this frame: the
    LiDAR's line or the network's shape? Median log errors ``(line, network, count)`` over
    every middle return cell of three the beam fill would join, in every
    :func:`check_stride`-th column band (NaN, NaN, 0 with none).

    A network that knows the surfaces between beams (a strong model, or an oracle) beats the
    line; the shipped student, on the scenario table, never does (docs/benchmarks.md).
    ``sums``: the returns' cell sums when the caller has them already (:func:`beam_cells`).
    """
    if sums is None:
        sums = beam_cells(np.ascontiguousarray(global_depth, dtype=np.float32), u, v, z, cell)
    return _beam_check(sums, max_gap, max_step)


def network_wins(line: float, network: float, count: int) -> bool:
    """The verdict on :func:`beam_check`'s medians: the network's shape predicts the beams
    better (the fills off for the frame), on at least :data:`MIN_BEAM_CHECKS` triples."""
    return count >= MIN_BEAM_CHECKS and network < line


def _beam_check(sums: np.ndarray, max_gap: float, max_step: float) -> tuple[float, float, int]:
    """:func:`beam_check` from the cell sums of :func:`beam_cells`."""
    n = int(np.count_nonzero(sums[0]))
    lin, net = np.empty(n), np.empty(n)
    k = beam_kernels.beam_errors(sums, float(max_gap), float(max_step),
                                 check_stride(sums.shape[2]), lin, net)
    if not k:
        return float('nan'), float('nan'), 0
    line, network = beam_kernels.medians(lin, net, k)
    return float(line), float(network), int(k)


def beam_fill(global_depth: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
              cell: int, max_gap: float, max_step: float, max_nearer: float = np.inf,
              reach: float = 0.0, edge_step: float = 0.1, check: bool = False) -> np.ndarray:
    """The beam fill alone (:func:`checked_beam_fill` without its verdict)."""
    return checked_beam_fill(global_depth, u, v, z, cell, max_gap, max_step, max_nearer, reach,
                             edge_step, check)[0]


def checked_beam_fill(global_depth: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
                      cell: int, max_gap: float, max_step: float, max_nearer: float = np.inf,
                      reach: float = 0.0, edge_step: float = 0.1,
                      check: bool = False,
                      sums: Optional[np.ndarray] = None) -> tuple[np.ndarray, bool]:
    """The beam fill of returns ``u``, ``v``, ``z``: [H, gw] float32 disparity (1/m).

    Per ``cell``-pixel column band, consecutive cells with returns (their mean row and mean
    disparity) at most ``max_gap`` px apart, whose disparities differ by at most ``max_step``
    in log, are joined linearly down the pixel rows between them; NaN elsewhere, and NaN at
    the rows where the network (``global_depth`` [H, W], at the band's centre column) is more
    than ``max_nearer`` (a share of disparity) nearer than its own line between the two ends:
    an object in front of the surface the two beams hit. Below the band's lowest return, the
    line of its last joined returns goes on for ``reach`` px when they lie on one
    (:data:`LINE_POINTS`), with the same test against the network's own line, until the
    network's depth steps by more than ``edge_step`` (log) from one row to the next. With
    ``check``, all NaN when :func:`beam_check` finds the network's shape the better predictor
    (on at least :data:`MIN_BEAM_CHECKS` triples). Compiled;
    :func:`depth_node.core.fusion_reference.beam_fill_reference` is the numpy reference.
    Returns the fill and whether :func:`beam_check` found the network the better predictor
    (then the fusion keeps the network's shape at edges too: no edge fill). ``sums``: the
    returns' cell sums when the caller has them already (:func:`beam_cells`; the fusion's
    first pass over the returns makes them).
    """
    zg = np.ascontiguousarray(global_depth, dtype=np.float32)
    height, width = zg.shape
    gh, gw = grid_shape(height, width, cell)
    out = np.empty((height, gw), np.float32)
    if max_gap <= 0 or not z.size:
        out.fill(np.nan)
        return out, False
    if sums is None:
        sums = beam_cells(zg, u, v, z, cell)
    if check:
        if network_wins(*_beam_check(sums, max_gap, max_step)):
            out.fill(np.nan)
            return out, True
    beam_kernels.beam_fill(zg, sums, cell_centres(width, gw, cell), float(max_gap),
                           float(max_step), float(max_nearer), float(reach), LINE_POINTS,
                           LINE_MIN_POINTS, LINE_TOLERANCE, float(edge_step), out)
    return out, False


__all__ = ['BEAM_CHECK_BANDS', 'beam_cells', 'beam_check', 'beam_fill', 'check_stride',
           'checked_beam_fill', 'LINE_MIN_POINTS', 'LINE_POINTS', 'LINE_TOLERANCE',
           'MIN_BEAM_CHECKS', 'network_wins']
