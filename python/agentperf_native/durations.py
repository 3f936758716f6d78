"""Durations written as people write them: ``500ms``, ``30s``, ``10m``, ``1h``, or plain seconds."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|ms|s|min|m|h)?\s*$")


def parse_duration(text: str | float | int) -> float:
    """Returns seconds. Raises ValueError naming the accepted forms."""
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"duration must not be negative: {text}")
        return float(text)
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"cannot read duration {text!r}: write e.g. 500ms, 30s, 10m, 1h (or plain seconds)")
    value, unit = match.groups()
    return float(value) * _UNITS[unit or "s"]


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.0f}ms"
    if seconds < 120:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"
