"""Benchmarks: each prints a table (``benchmark <name>``); never imported by runtime code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: str, report: Any) -> None:
    """Write a benchmark's ``--json`` report: indented, UTF-8, a newline at the end."""
    Path(path).write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')


__all__ = ['write_json']
