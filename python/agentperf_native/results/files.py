"""JSON files of a results directory (written atomically) and the manifest's common part.

``summary.json`` is written last and atomically: its presence means the run finished (or was
interrupted and says so).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np



def write_json(path: Path, obj: Any) -> None:
    """Writes JSON atomically (temporary file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=_default)
        f.write("\n")
    os.replace(tmp, path)


def _default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot encode {type(o).__name__} as JSON")


def machine_info() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def base_manifest(command: list[str], config: dict[str, Any]) -> dict[str, Any]:
    from .. import __version__

    return {
        "tool": "agentperf-native",
        "version": __version__,
        "command": command,
        "config": config,
        "machine": machine_info(),
    }
