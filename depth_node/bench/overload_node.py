"""The real depth_node with per-frame timing records, for ``benchmark overload``.

``python -m depth_node.bench.overload_node --record FILE --ros-args ...`` runs
:class:`~depth_node.ros.node.DepthNode` unchanged except for three hooks that write one JSON
line each to ``FILE`` (wall-clock seconds, ``time.time()``, the clock the benchmark stamps its
images with):

* ``{"k": "frame", "stamp", "received", "start", "end", "model_ms", "stages"}`` per frame the
  worker took: when the image callback ran, when the worker started and finished the frame,
  the estimator's ``predict`` time and the runner's per-stage timings (ms);
* ``{"k": "depth", "stamp", "t"}`` when the ``depth`` image (or ``depth/relative``, published
  alone when a frame has no metric depth) was handed to rclpy.

The hooks wrap attributes (the estimator's ``predict``, the runner's ``run``, the depth
publisher) and the node's ``_process`` method, so whatever the node does in between is what
is measured.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

from depth_node.messages.readers import stamp_ns
from depth_node.ros.node import DepthNode
from depth_node.ros.process import run_node


class _TimedPublisher:
    """A publisher that reports when each message was handed over."""

    def __init__(self, publisher: Any, done: Callable[[Any], None]) -> None:
        self._publisher = publisher
        self._done = done

    def publish(self, msg: Any) -> None:
        self._publisher.publish(msg)
        self._done(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._publisher, name)


class TimedNode(DepthNode):
    """:class:`DepthNode` that writes the timing records of the module docstring."""

    def __init__(self, params_files: Sequence[str], record: str, **kwargs: Any) -> None:
        self._out = open(record, 'w', buffering=1)
        self._out_lock = threading.Lock()
        self._model_ms = float('nan')
        super().__init__(params_files, **kwargs)
        predict = self.estimator.predict

        def timed_predict(rgb: Any) -> Any:
            t0 = time.perf_counter()
            out = predict(rgb)
            self._model_ms = (time.perf_counter() - t0) * 1e3
            return out

        self.estimator.predict = timed_predict  # type: ignore[method-assign]
        self._pub_depth = _TimedPublisher(self._pub_depth, self._on_depth)
        self._pub_relative = _TimedPublisher(self._pub_relative, self._on_depth)
        self._stages: dict[str, float] = {}
        run = self.runner.run

        def timed_run(*args: Any, **kwargs: Any) -> Any:
            out = run(*args, **kwargs)
            self._stages = dict(out.timings_ms)
            return out

        self.runner.run = timed_run  # type: ignore[method-assign]

    def _write(self, **record: Any) -> None:
        with self._out_lock:
            if not self._out.closed:
                self._out.write(json.dumps(record) + '\n')

    def _on_depth(self, msg: Any) -> None:
        self._write(k='depth', stamp=stamp_ns(msg) * 1e-9, t=time.time())

    def _process(self, msg: Any, received: float) -> None:
        offset = time.time() - time.perf_counter()  # perf_counter -> wall clock
        start = time.perf_counter()
        self._model_ms = float('nan')
        self._stages = {}
        try:
            super()._process(msg, received)
        finally:
            self._write(k='frame', stamp=stamp_ns(msg) * 1e-9, received=received + offset,
                        start=start + offset, end=time.perf_counter() + offset,
                        model_ms=self._model_ms, stages=self._stages)

    def shutdown(self) -> None:
        super().shutdown()
        with self._out_lock:
            self._out.close()


def main(argv: Optional[list[str]] = None) -> int:
    """``--record FILE`` then the node's own arguments (``--ros-args ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != '--record':
        print('usage: python -m depth_node.bench.overload_node --record FILE --ros-args ...',
              file=sys.stderr)
        return 2
    record = args[1]
    return run_node(lambda files: TimedNode(files, record), [sys.argv[0]] + args[2:])


if __name__ == '__main__':
    sys.exit(main())
