"""The results directory: manifest first, request records as they arrive, summary last.

``summary.json`` is written last and atomically: its presence means the run finished (or was
interrupted and says so). Request records are appended to ``requests.csv`` while the run goes on,
so a crash or Ctrl-C keeps everything measured up to that point.
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

from . import __version__
from .engine import ERROR_KINDS, RECORD_DTYPE

#: Columns of requests.csv: every record field; timestamps relative to the run's time origin (ns).
TIME_FIELDS = ("scheduled_ns", "sent_ns", "first_byte_ns", "first_token_ns", "last_token_ns", "done_ns")


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


class RecordWriter:
    """Appends records to ``requests.csv``; timestamps are written relative to ``origin_ns``
    (0 stays 0: "did not happen")."""

    def __init__(self, path: Path, origin_ns: int) -> None:
        self.path = path
        self.origin_ns = origin_ns
        self.count = 0
        self._file: TextIO = path.open("w", encoding="utf-8", buffering=1 << 20)
        names = list(RECORD_DTYPE.names or ())
        self._file.write(",".join(names + ["error"]) + "\n")

    def write(self, records: np.ndarray) -> None:
        if records.size == 0:
            return
        cols = []
        for name in RECORD_DTYPE.names or ():
            col = records[name].astype(np.int64)
            if name in TIME_FIELDS:
                col = np.where(col != 0, col - self.origin_ns, 0)
            cols.append(col)
        table = np.column_stack(cols)
        kinds = np.array(ERROR_KINDS, dtype=object)[records["error_kind"]]
        lines = [",".join(map(str, row)) + "," + kind for row, kind in zip(table.tolist(), kinds)]
        self._file.write("\n".join(lines) + "\n")
        self._file.flush()
        self.count += len(records)

    def close(self) -> None:
        self._file.close()


def read_records(path: Path) -> np.ndarray:
    """Reads requests.csv back into a structured array (timestamps stay relative)."""
    data = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
    out = np.zeros(data.shape, dtype=RECORD_DTYPE)
    for name in RECORD_DTYPE.names or ():
        out[name] = data[name]
    return out


def machine_info() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def base_manifest(command: list[str], config: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool": "agentperf-native",
        "version": __version__,
        "command": command,
        "config": config,
        "machine": machine_info(),
    }
