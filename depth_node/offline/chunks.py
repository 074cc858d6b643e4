"""Time chunks of a long bag: one fleet task each, merged back into the bag's own result.

:func:`plan_chunks` splits a bag at image log times every ``chunk_s`` seconds into
:class:`~depth_node.offline.reader.ReadWindow` s, each numbering its frames as the whole bag
does (so the held-out LiDAR split, seeded by frame index, is the same) and each reading the
context its frames need - the sweeps, ground truth and camera_info logged before its first
frame, ``/tf_static`` - as a whole pass would have it. Per-frame state of the pipeline is
carried by warm-up: the frames of the ``warmup_s`` before a chunk go through the pipeline
unscored, so a fit held for ``fit.hold_time`` is held across the edge. With the temporal filter
off that state is all there is and a chunked run equals the whole run exactly (default
warm-up: ``fit.hold_time`` + 1 s, which also covers the uncertainty's self-check period of
1 s); the temporal filter (``filter.enable``, on by default)
remembers further back, and the first frames of a chunk then differ from the whole run's by
what the warm-up could not restore (:func:`chunking_is_exact`).

:func:`merge_chunks` puts the chunks' results back together in order: per-frame records
(their ``time`` again from the bag's first frame), counts, issues (each once), the sample
figure by the whole run's rule. The error-versus-depth curve and the reliability sums are
added per chunk: pixel counts (and so the share within 1 and 2 sigma) exactly, the float sums
of the plots to rounding.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Optional, Sequence

from depth_node.offline.drive_bag import DriveTopics
from depth_node.offline.eval_config import NodeSettings
from depth_node.offline.fleet_report import sum_accumulators
from depth_node.offline.reader import DriveReader, ReadWindow
from depth_node.offline.records import MISALIGNED_ISSUE
from depth_node.offline.results import EvaluationResult

__all__ = ['chunking_is_exact', 'default_warmup', 'image_log_times', 'merge_chunks',
           'plan_chunks']


def default_warmup(settings: NodeSettings) -> float:
    """Seconds of warm-up that carry a held fit across a chunk edge (hold_time + 1 s)."""
    return float(settings.pipeline.hold_time) + 1.0


def chunking_is_exact(settings: NodeSettings, warmup_s: float) -> bool:
    """Whether chunks give the whole run's numbers bitwise: no temporal filter, and a warm-up
    covering ``fit.hold_time`` and a period of the uncertainty's self-check."""
    p = settings.pipeline
    return not p.temporal and warmup_s > p.hold_time \
        and warmup_s >= p.uncertainty_self_check_period


def image_log_times(bag: str | Path, topics: DriveTopics = DriveTopics()) -> list[int]:
    """Log times (ns) of the camera messages of a bag, in bag order (read, not decoded)."""
    return [m.log_ns for m in DriveReader(bag, topics).messages({topics.image})]


def plan_chunks(log_times: Sequence[int], chunk_s: float,
                warmup_s: float = 0.0) -> list[ReadWindow]:
    """Windows of ``chunk_s`` seconds of images each (from the first image's log time).

    ``log_times`` are those of :func:`image_log_times`; frames are numbered by their position
    there, which is the reader's numbering as long as every image message decodes.
    """
    if not log_times:
        return []
    if not chunk_s > 0:
        raise ValueError(f'chunk_s must be > 0, got {chunk_s}')
    times = list(log_times)
    step, warm = int(round(chunk_s * 1e9)), int(round(warmup_s * 1e9))
    starts = [0]
    for i in range(1, len(times)):
        if (times[i] - times[0]) // step != (times[starts[-1]] - times[0]) // step:
            starts.append(i)
    windows = []
    for k, a in enumerate(starts):
        b = starts[k + 1] if k + 1 < len(starts) else None
        first = bisect.bisect_left(times, times[a] - warm, 0, a) if k else a
        windows.append(ReadWindow(start_ns=times[a], stop_ns=None if b is None else times[b],
                                  first_index=first, warmup_ns=times[a] - times[first]
                                  if k else 0))
    return windows


def merge_chunks(chunks: Sequence[EvaluationResult],
                 first_stamp: Optional[float]) -> EvaluationResult:
    """The bag's result from its chunks' (in order); ``first_stamp``: chunk 0's first frame."""
    head = chunks[0]
    out = EvaluationResult(head.bag, head.estimator, head.ground_truth, head.options,
                           head.settings, images_declared=head.images_declared)
    seen: set[str] = set()
    for c in chunks:
        for r in c.records:
            if first_stamp is not None:
                r.time = r.stamp - first_stamp
            out.records.append(r)
        for issue in c.issues:
            # One misalignment issue per bag: each chunk names the frame it first saw it at.
            key = MISALIGNED_ISSUE if issue.message.startswith(MISALIGNED_ISSUE) \
                else str(issue)
            if key not in seen:
                seen.add(key)
                out.issues.append(issue)
        out.interrupted |= c.interrupted
        out.damaged |= c.damaged
        for k in ('images_skipped', 'frames_failed', 'wall_s', 'read_s', 'process_s',
                  'split_s', 'metrics_s', 'output_s'):
            setattr(out, k, getattr(out, k) + getattr(c, k))
    # The sample figure: the last frame with depth at or before the target, else the first.
    target = head.options.sample_frame
    if target is None:
        target = max(head.images_declared // 2, 0)
    samples = [c.sample for c in chunks if c.sample is not None]
    before = [s for s in samples if s.index <= target]
    out.sample = max(before, key=lambda s: s.index) if before else \
        min(samples, key=lambda s: s.index) if samples else None
    sum_accumulators(out, chunks)
    return out
