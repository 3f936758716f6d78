"""Request records on disk: ``requests.bin``, appended in batches by a writer thread.

The file is the engine's records as they are (:data:`~agentperf_native.engine.RECORD_DTYPE`,
little-endian, timestamps on the engine's monotonic clock in ns; the manifest holds the dtype and
the run's time origin). Writing happens on a thread of its own, never on the engine's threads or
the orchestration loop, and every batch is flushed to the kernel as soon as it is written: a run
killed with SIGKILL keeps every record drained before the kill (the reader drops a torn last
record).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from ..engine import ERROR_KINDS, RECORD_DTYPE

FILE_NAME = "requests.bin"


def dtype_description() -> dict:
    """What the manifest says about ``requests.bin`` (enough to read it without this package)."""
    return {"file": FILE_NAME, "itemsize": RECORD_DTYPE.itemsize, "byte_order": "little",
            "fields": [[name, RECORD_DTYPE.fields[name][0].str, RECORD_DTYPE.fields[name][1]]
                       for name in RECORD_DTYPE.names or ()],
            "error_kinds": list(ERROR_KINDS)}


class RecordFile:
    """Appends record batches to ``path`` from a background thread. ``write`` never blocks on I/O."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0
        self.error: OSError | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._file = self.path.open("ab", buffering=0)
        self._thread = threading.Thread(target=self._run, name="agentperf-records", daemon=True)
        self._thread.start()

    def write(self, records: np.ndarray) -> None:
        if records.size:
            self.count += len(records)
            self._queue.put(records)

    def flush(self) -> None:
        """Blocks until every batch given so far is written."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._file.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._file.write(np.ascontiguousarray(item).tobytes())
            except OSError as e:  # disk full: keep the run going, say so at the end
                self.error = self.error or e


def read_records(path: str | Path) -> np.ndarray:
    """Reads ``requests.bin`` (a results directory or the file) as a structured array."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    raw = path.read_bytes()
    whole = len(raw) - len(raw) % RECORD_DTYPE.itemsize  # a torn last record (killed mid-write) is dropped
    return np.frombuffer(raw[:whole], dtype=RECORD_DTYPE).copy()
