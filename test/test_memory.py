"""Memory goes back near steady state after a burst of big frames (``malloc_trim`` on glibc).

The runner is run in a fresh interpreter (so its RSS is its own): small frames, a burst of
3000x2000 frames, small frames again. glibc keeps the big frames' freed blocks in its heaps
unless they are trimmed: +44 MB for good before, about 0 after.
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
