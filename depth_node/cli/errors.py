"""How the console scripts end on an error: the message they print and the exit code."""

from __future__ import annotations

import sys

from depth_node.core.errors import ConfigError

#: Exit codes shared by the console scripts.
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def exit_code(prog: str, exc: BaseException) -> int:
    """Print ``exc`` as ``prog`` reports it and return the exit code.

    A :class:`ConfigError` is ``prog: configuration error: ...`` (2), any other
    :class:`~depth_node.core.errors.DepthNodeError` ``prog: ...`` (2), Ctrl-C 130 (silent).
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, ConfigError):
        print(f'{prog}: configuration error: {exc}', file=sys.stderr)
    else:
        print(f'{prog}: {exc}', file=sys.stderr)
    return EXIT_CONFIG


__all__ = ['exit_code', 'EXIT_CONFIG', 'EXIT_INTERRUPTED']
