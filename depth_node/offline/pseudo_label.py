"""Pseudo-labels for the student: the keyframe teacher over many bags, into Parquet shards.

The Depth Anything V2 recipe on a fleet's unlabelled drives: a teacher (Marigold, with its
test-time ensemble) labels keyframes, aligned to the LiDAR, and the student trains on them
(``train --shards``). Per bag (:class:`LabelWorker`, one Ray actor per worker, the teacher
loaded once): the frames of :class:`~depth_node.offline.reader.DriveReader`, the node's
keyframe policy (:class:`~depth_node.pipeline.keyframe_policy.KeyframePolicy`, fresh per bag;
offline every candidate runs, none is replaced for lack of time), and per keyframe
:func:`~depth_node.pipeline.keyframe_job.process_keyframe` - what the node's keyframe worker
does: teacher and ensemble, LiDAR projection, see-through rejection, robust fit in the teacher's
space, metric depth and its uncertainty. Keyframes whose fit is refused get no label (counted
per reason). Rows (:class:`~depth_node.offline.shards.LabelRow`) go into shards of at most
``rows_per_shard`` rows, ``<bag>-<hash>-00000.parquet``, ..., written by the worker as they
fill (memory stays at one shard; on a cluster ``out`` must be shared storage, as the bags
are); ``dataset.json`` lists the bags and shards. Resumable as the fleet evaluation is:
``.done/<bag>-<hash>.json`` records the configuration hash; a bag whose hash matches is not
labelled again.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import EstimatorConfig
from depth_node.offline.bag_set import bag_key, path_identity
from depth_node.offline.drive_bag import DriveTopics
from depth_node.offline.eval_config import NodeSettings
from depth_node.offline.fleet import progress_bar, RaySession, RaySettings, run_pool
from depth_node.offline.records import DriveFrame
from depth_node.offline.shards import FORMAT, LabelRow, remove_shards, write_shard
from depth_node.pipeline.frame import FrameInput
from depth_node.pipeline.keyframe_job import KeyframeConfig
from depth_node.pipeline.keyframe_policy import KeyframePolicy

__all__ = ['LabelJob', 'LabelOutcome', 'LabelWorker', 'PseudoLabelRun', 'frame_input']

EXTRINSICS = ('auto', 'bag', 'parameters')


@dataclass(frozen=True)
class LabelJob:
    """What every worker needs: the teacher, the node's policy and fit, where to read."""

    teacher: EstimatorConfig  # type 'marigold' (keyframes.*)
    policy: KeyframePolicy  # a template: each bag gets a fresh copy
    keyframe: KeyframeConfig  # alignment (fit) settings of the keyframe worker
    settings: NodeSettings  # extrinsic.*, lidar.max_age
    topics: DriveTopics = DriveTopics()
    extrinsic: str = 'auto'  # /tf_static when it connects the frames, else extrinsic.*
    max_frames: int = 0  # camera frames read per bag (0: all)
    rows_per_shard: int = 64  # ~2-3 MB a row at 640x480
    threads: int = 1  # torch threads per worker (0: torch's default)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad option."""
        if self.extrinsic not in EXTRINSICS:
            raise ConfigError('--extrinsic', f'must be one of {", ".join(EXTRINSICS)}',
                              self.extrinsic)
        if self.max_frames < 0:
            raise ConfigError('--max-frames', 'must be >= 0', self.max_frames)
        if self.rows_per_shard < 1:
            raise ConfigError('--rows-per-shard', 'must be >= 1', self.rows_per_shard)
        if not self.policy.enabled:
            raise ConfigError('keyframes.every_n', 'the keyframe policy never triggers (every_n, '
                              'every_t and scene_change all 0)', self.policy.every_n)
        self.keyframe.validate()

    def config_hash(self, bag: str | Path) -> str:
        """sha256 of everything a bag's labels depend on."""
        p = self.policy
        data = {'format': FORMAT, 'teacher': dataclasses.asdict(self.teacher),
                'model': path_identity(self.teacher.model_path),
                'policy': [p.every_n, p.every_t, p.scene_change, p.min_interval, p.thumbnail],
                'keyframe': dataclasses.asdict(self.keyframe),
                'settings': dataclasses.asdict(self.settings),
                'topics': dataclasses.asdict(self.topics), 'extrinsic': self.extrinsic,
                'max_frames': self.max_frames, 'rows_per_shard': self.rows_per_shard,
                'threads': self.threads, 'bag': str(Path(bag).absolute()),
                'files': path_identity(bag)}
        text = json.dumps(data, sort_keys=True,
                          default=lambda v: v.tolist() if hasattr(v, 'tolist') else repr(v))
        return hashlib.sha256(text.encode()).hexdigest()


def frame_input(frame: DriveFrame, settings: NodeSettings, extrinsic: str) -> FrameInput:
    """The keyframe's input as the node's runner builds it: the camera model resized to the
    image, the sweep with the bag's ``/tf_static`` pose (or ``extrinsic.*``)."""
    cam = frame.camera
    if cam is None:
        raise DepthNodeError('no camera_info')
    h, w = frame.rgb.shape[:2]
    if (cam.width, cam.height) != (w, h):
        cam = cam.resized(w, h)
    pose = frame.lidar_to_camera
    if extrinsic == 'parameters' or (extrinsic == 'auto' and pose is None):
        pose = settings.extrinsic
    lidar = frame.lidar if pose is not None else None
    return FrameInput(frame.rgb, cam, frame.stamp, lidar,
                      pose if pose is not None else settings.extrinsic)


@dataclass
class LabelOutcome:
    """What became of one bag."""

    bag: str
    key: str
    status: str  # 'done', 'resumed' or 'failed'
    shards: list[str] = field(default_factory=list)  # its shard files in the dataset folder
    rows: int = 0  # labelled keyframes
    frames: int = 0  # camera frames read
    keyframes: int = 0  # keyframes the policy chose
    refused: dict[str, int] = field(default_factory=dict)  # fit refusals: reason -> keyframes
    issues: list[str] = field(default_factory=list)  # what the reader could not read
    damaged: bool = False
    error: str = ''
    worker: str = ''
    seconds: float = 0.0


class LabelWorker:
    """One worker: the teacher built once, then bag after bag (Ray actor)."""

    def __init__(self, job: LabelJob, out: str) -> None:
        self.job = job
        self.out = Path(out)
        self.error = ''
        self.teacher: Any = None
        try:
            from depth_node.pipeline.keyframe_job import build_teacher
            self.teacher = build_teacher(job.teacher)
            if job.threads and 'torch' in sys.modules:
                sys.modules['torch'].set_num_threads(job.threads)
        except Exception as exc:  # kept: ready() reports it to the driver
            self.error = f'{type(exc).__name__}: {exc}'

    def ready(self) -> str:
        """'' when the teacher was built, else why not."""
        return self.error

    def run(self, bag: str) -> LabelOutcome:
        """Label the keyframes of one bag; an unreadable bag is a failed outcome."""
        import socket

        from depth_node.offline.reader import DriveReader
        from depth_node.offline.records import BagReadError
        from depth_node.offline.shards import encode_shard
        from depth_node.pipeline.keyframe_job import process_keyframe
        t0 = time.perf_counter()
        job = self.job
        out = LabelOutcome(bag, bag_key(Path(bag)), 'done',
                           worker=f'{socket.gethostname()}:{os.getpid()}')
        policy = copy.deepcopy(job.policy)
        policy.reset()
        refused: Counter[str] = Counter()
        rows: list[LabelRow] = []
        name = job.teacher.model_path or job.teacher.type
        meta = {'depth_node.teacher': name, 'depth_node.bag': bag}
        remove_shards(self.out, out.key)  # an earlier (or a lost worker's) attempt

        def flush() -> None:
            if rows:
                out.shards.append(write_shard(self.out, out.key, len(out.shards),
                                              encode_shard(rows, meta)))
                out.rows += len(rows)
                rows.clear()

        reader = DriveReader(bag, job.topics, lidar_tolerance=job.settings.lidar_max_age)
        try:
            for frame in reader.frames():
                out.frames += 1
                if frame.camera is not None:  # the node drops (and never keyframes) these
                    hit, reason = policy.should_trigger(frame.stamp, frame.rgb)
                    if hit:
                        out.keyframes += 1
                        inp = frame_input(frame, job.settings, job.extrinsic)
                        res = process_keyframe(self.teacher, inp, None, job.keyframe)
                        if res.depth is None:
                            refused[' '.join(w for w in res.fit.reason.split()
                                             if not any(c.isdigit() for c in w))] += 1
                        else:
                            cam = inp.camera
                            rows.append(LabelRow(
                                bag, job.topics.image, frame.stamp_ns, frame.index,
                                frame.frame_id, frame.rgb, res.depth, res.uncertainty,
                                (cam.fx, cam.fy, cam.cx, cam.cy), name, reason,
                                res.space.value, res.fit.scale, res.fit.shift,
                                res.fit.residual, int(res.fit.points), int(res.fit.inliers),
                                res.lidar_pixels))
                            if len(rows) >= job.rows_per_shard:
                                flush()
                if job.max_frames and out.frames >= job.max_frames:
                    break
        except (BagReadError, DepthNodeError) as exc:
            out.status, out.error = 'failed', str(exc)
        out.issues = [str(i) for i in reader.issues]
        out.damaged = bool(reader.issues)
        if out.status == 'done' and out.frames == 0:
            out.status, out.error = 'failed', f'{bag}: no camera frame could be read'
        out.refused = dict(refused)
        if out.status == 'done':
            flush()
        else:
            remove_shards(self.out, out.key)
            out.shards, out.rows = [], 0
        out.seconds = time.perf_counter() - t0
        return out


class PseudoLabelRun:
    """Label ``bags`` with ``job`` into the dataset folder ``out`` (see the module).

    ``ray=None`` runs the bags in this process, without Ray.
    """

    def __init__(self, bags: Sequence[str | Path], job: LabelJob, out: str | Path,
                 ray: Optional[RaySettings] = RaySettings(), resume: bool = True,
                 progress: bool = False) -> None:
        job.validate()
        self.bags = [str(b) for b in bags]
        self.job = job
        self.out = Path(out)
        self.ray = ray
        self.resume = resume
        self.progress = progress
        self.workers = 0
        self.interrupted = False

    def _done_file(self, bag: str) -> Path:
        return self.out / '.done' / f'{bag_key(Path(bag))}.json'

    def run(self) -> list[LabelOutcome]:
        """Label (or skip) every bag, write the shards and ``dataset.json``; the outcomes."""
        self.out.mkdir(parents=True, exist_ok=True)
        hashes = [self.job.config_hash(b) for b in self.bags]
        outcomes: list[Optional[LabelOutcome]] = [None] * len(self.bags)
        todo = []
        for i, bag in enumerate(self.bags):
            done = self._load_done(bag, hashes[i]) if self.resume else None
            if done is not None:
                outcomes[i] = done
            else:
                todo.append(i)

        def finished(k: int, outcome: LabelOutcome) -> None:
            i = todo[k]
            if outcome.status == 'done':
                self._write_done(outcome, hashes[i])
            outcomes[i] = outcome

        def failed(k: int, message: str) -> None:
            i = todo[k]
            key = bag_key(Path(self.bags[i]))
            remove_shards(self.out, key)  # what the lost worker left
            outcomes[i] = LabelOutcome(self.bags[i], key, 'failed', error=message)

        try:
            if self.ray is None:
                worker = LabelWorker(self.job, str(self.out))
                if worker.error:
                    raise ConfigError('keyframes.model_path', 'the teacher cannot be built',
                                      worker.error)
                with progress_bar(self.progress, len(todo), 'bag') as bar:
                    for k, i in enumerate(todo):
                        finished(k, worker.run(self.bags[i]))
                        bar.update(1)
            elif todo:
                with RaySession(self.ray) as session:
                    self.workers = session.workers(len(todo))
                    run_pool(LabelWorker, (self.job, str(self.out.absolute())),
                             [self.bags[i] for i in todo], session,
                             finished, failed, progress=self.progress, unit='bag')
        except KeyboardInterrupt:
            self.interrupted = True
        result = [o for o in outcomes if o is not None]
        self._write_manifest(result)
        return result

    def _load_done(self, bag: str, config_hash: str) -> Optional[LabelOutcome]:
        try:
            data = json.loads(self._done_file(bag).read_text(encoding='utf-8'))
        except (OSError, ValueError):
            return None
        if data.get('config_hash') != config_hash or not all(
                (self.out / f).is_file() for f in data.get('shards', [])):
            return None
        return LabelOutcome(bag, data['key'], 'resumed', shards=data['shards'], rows=data['rows'],
                            frames=data['frames'], keyframes=data['keyframes'],
                            refused=data['refused'], issues=data['issues'],
                            damaged=data['damaged'])

    def _write_done(self, o: LabelOutcome, config_hash: str) -> None:
        """The bag's done file (its shards are written): what a later run skips."""
        done = self._done_file(o.bag)
        done.parent.mkdir(exist_ok=True)
        record = {'config_hash': config_hash, 'key': o.key, 'bag': o.bag, 'shards': o.shards,
                  'rows': o.rows, 'frames': o.frames, 'keyframes': o.keyframes,
                  'refused': o.refused, 'issues': o.issues, 'damaged': o.damaged,
                  'worker': o.worker, 'seconds': o.seconds}
        tmp = done.with_name(done.name + '.part')
        tmp.write_text(json.dumps(record, indent=2), encoding='utf-8')
        os.replace(tmp, done)

    def _write_manifest(self, outcomes: list[LabelOutcome]) -> None:
        from depth_node.offline.shards import shard_files
        manifest = {
            'format': FORMAT, 'teacher': dataclasses.asdict(self.job.teacher),
            'rows': sum(o.rows for o in outcomes),
            'bags': [dataclasses.asdict(o) for o in outcomes],
            'shards': [p.name for p in shard_files(self.out)],
            'workers': self.workers, 'interrupted': self.interrupted}
        (self.out / 'dataset.json').write_text(json.dumps(manifest, indent=2, default=str),
                                               encoding='utf-8')
