"""The node's process: start-up errors as one line, the spin, and a shutdown that runs once.

:func:`run_node` is the body of the console script (``depth_node.ros.node.main``):

* a configuration error - rcl refusing a params file at ``rclpy.init``, a
  :class:`~depth_node.core.errors.ConfigError` while the node starts - prints
  ``depth_node: configuration error: ...`` and returns 2, without a traceback;
* Ctrl-C / SIGTERM ends the spin (``KeyboardInterrupt``, ``ExternalShutdownException``, or
  rcl refusing the next wait set once the context is shut down) and the process returns 0;
* cleanup runs once, with SIGINT and SIGTERM ignored from its first line: a terminal's Ctrl-C
  reaches every process of its group, and ``ros2 launch`` then sends its own SIGINT, which
  used to land in the cleanup as a ``KeyboardInterrupt`` traceback and exit code -2.
"""

from __future__ import annotations

import signal
import sys
from typing import Any, Callable, Optional, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

from depth_node.core.errors import ConfigError
from depth_node.ros.param_files import load_params_file, params_files

#: The signals a shutdown ignores once it has started.
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_shutdown_signals() -> None:
    """Ignore further SIGINT / SIGTERM (cleanup has started; it finishes on its own)."""
    for sig in SHUTDOWN_SIGNALS:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread (an embedding test): nothing to protect
            return


def rcl_start_error(exc: Exception, argv: Sequence[str]) -> str:
    """rcl's start-up error, with the parameter named when a params file is the cause."""
    message = str(exc).split(', at ')[0]  # drop rcl's source locations
    for path in params_files(argv):
        try:
            load_params_file(path)
        except ConfigError as named:
            if named.name != '--params-file':
                return f'{named} ({message})'
    return message


def run_node(make_node: Callable[[list[str]], Any], args: Optional[list[str]] = None,
             name: str = 'depth_node') -> int:
    """Init rclpy, build the node (``make_node(params_files)``), spin it, clean up once.

    The node must have ``shutdown()`` (stop its threads) besides ``destroy_node()``. Returns the
    exit code: 0, or 2 for a configuration error.
    """
    argv = list(sys.argv if args is None else args)
    try:
        rclpy.init(args=args)
    except _rclpy.RCLError as exc:  # e.g. a params file rcl cannot parse: say so, no traceback
        print(f'{name}: configuration error: {rcl_start_error(exc, argv)}', file=sys.stderr)
        return 2
    code = 0
    try:
        node = None
        try:
            node = make_node(params_files(argv))
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            executor.spin()
        except ConfigError as exc:
            print(f'{name}: configuration error: {exc}', file=sys.stderr)
            code = 2
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except _rclpy.RCLError:
            # Ctrl-C / SIGTERM shut the context down between two waits: rcl then refuses the
            # next wait set or timer. That is the shutdown that was asked for, not an error.
            if rclpy.ok():
                raise
        finally:
            ignore_shutdown_signals()
            if node is not None:
                node.shutdown()
                node.destroy_node()
            rclpy.try_shutdown()
            ignore_shutdown_signals()  # rclpy put back the handlers it had replaced
    except KeyboardInterrupt:  # a second signal in the instant before cleanup ignored it
        pass
    return code


__all__ = ['ignore_shutdown_signals', 'rcl_start_error', 'run_node', 'SHUTDOWN_SIGNALS']
