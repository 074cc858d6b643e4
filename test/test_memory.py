"""Memory: no growth from frame to frame, and back near steady state after big frames.

* 1000 frames through the runner (pipeline, output packing into reused buffers, the node's
  periodic stats snapshot) allocate nothing that stays: the memory tracemalloc traces in blocks
  of 256 bytes and more does not grow after the first frames. Smaller blocks are left out
  because CPython keeps freed small tuples on free lists (up to 2000 per size) that tracemalloc
  still counts; a container that grows per frame shows in its own, growing block.
* After a burst of 3000x2000 frames RSS goes back near steady state (``malloc_trim`` on glibc):
  glibc keeps the big frames' freed blocks in its heaps unless they are trimmed: +44 MB for
  good before, about 0 after.

Both run in a fresh interpreter, so what they measure is their own.
"""

import json
import os
import subprocess
import sys

import pytest

from depth_node.pipeline.memory import heap_free_bytes

SCRIPT = '''
import json, numpy as np
from depth_node.core.camera import PinholeCamera
from depth_node.estimators import build_estimator
from depth_node.estimators.base import EstimatorConfig
from depth_node.pipeline.runner import CameraModel, FrameRunner, ImageFrame, RunnerConfig


def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith('VmRSS'))


runner = FrameRunner(build_estimator(EstimatorConfig()), RunnerConfig())


def run(w, h, n):
    camera = CameraModel(PinholeCamera(w, h, 500.0, 500.0, w / 2, h / 2))
    for k in range(n):
        rgb = np.random.default_rng(k).integers(0, 255, (h, w, 3), np.uint8)
        assert runner.run(ImageFrame(rgb, k, 'camera'), camera, None).published


run(640, 480, 5)
steady = rss()
run(3000, 2000, 4)
peak = rss()
run(640, 480, 5)
print(json.dumps({'steady': steady, 'peak': peak, 'after': rss()}))
'''


@pytest.mark.skipif(heap_free_bytes() is None, reason='needs glibc 2.33+ (malloc_trim, mallinfo2)')
@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='needs /proc (Linux)')
def test_rss_returns_near_steady_state_after_a_burst_of_big_frames():
    out = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert out.returncode == 0, out.stderr
    mb = json.loads(out.stdout.strip().splitlines()[-1])
    assert mb['after'] - mb['steady'] < 25, mb
    print(f"RSS steady {mb['steady']:.0f} MB, peak {mb['peak']:.0f} MB, "
          f"after {mb['after']:.0f} MB")


GROWTH_SCRIPT = '''
import json, sys, tracemalloc
from depth_node.pipeline.published import OutputBuffers, PublishSettings
from depth_node.pipeline.runner import (CameraModel, FrameRunner, ImageFrame, RunnerConfig,
                                        Sweep)
from depth_node.sim.frames import save_frames, SimRig
from depth_node.testing.oracle import DisparityOracle

rig = SimRig.default(64, 48)
frames = list(rig.frames(3))
save_frames(sys.argv[1], frames)
publish = PublishSettings(cloud_color=True, cloud_sigma=True)  # every output kernel
runner = FrameRunner(DisparityOracle(sys.argv[1]),
                     RunnerConfig(extrinsic=rig.lidar_to_camera, publish=publish))
runner.buffers = OutputBuffers()  # as the node
camera = CameraModel(rig.camera)
sweeps = [f.lidar[::10].copy() for f in frames]  # 11k points: quick, still a fit


def frame(k):
    f = frames[k % len(frames)]
    stamp = k * 10**8  # 10 Hz
    run = runner.run(ImageFrame(f.rgb, stamp, 'camera'), camera,
                     Sweep(stamp, 'lidar', sweeps[k % len(frames)]),
                     emit=lambda outputs, frame, result: None)
    assert run.result is not None and run.result.depth is not None, run.reason
    if k % 10 == 9:
        runner.stats.snapshot()  # the node's diagnostics timer reads (and resets) the stats


def big(snapshot):
    return sum(t.size for t in snapshot.traces if t.size >= 256)


for k in range(50):
    frame(k)
tracemalloc.start()
for k in range(50, 100):
    frame(k)
before = tracemalloc.take_snapshot()
for k in range(100, 1000):
    frame(k)
after = tracemalloc.take_snapshot()
top = [str(s) for s in after.compare_to(before, 'lineno')[:3]]
print(json.dumps({'growth': big(after) - big(before), 'top': top}))
'''


def test_no_memory_growth_over_1000_frames(tmp_path):
    out = subprocess.run([sys.executable, '-c', GROWTH_SCRIPT, str(tmp_path)],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # A list that keeps one reference per frame would add 900 * 8 bytes here.
    assert got['growth'] < 2048, got
