"""Pythonic wrapper over the native engine: start, change concurrency, snapshot, drain records.

No Python runs per token: the native workers stamp and store integers; Python polls
:meth:`Engine.snapshot` and drains :meth:`Engine.drain_records` as a numpy structured array.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from .endpoint import Endpoint
from .workload import EncodedWorkload

def _record_dtype() -> np.dtype:
    """The C++ struct's fields, plus ``shard`` (uint16) in the padding after ``flags``: the shard
    process that ran the request (0 without shards), written on the Python side (the native
    engine zeroes the padding)."""
    fields = list(_core.record_fields())
    after_flags = next(offset for name, _, offset in fields if name == "flags") + 1
    shard_offset = after_flags + after_flags % 2
    if any(shard_offset <= offset < shard_offset + 2 for _, _, offset in fields):
        raise ImportError("the native record has no room for the shard column; rebuild agentperf-native")
    fields.insert(next(i for i, f in enumerate(fields) if f[2] > shard_offset), ("shard", "<u2", shard_offset))
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": _core.RECORD_ITEMSIZE})


#: The dtype of one request record; field names, types and offsets come from the C++ struct (and
#: ``shard``, see :func:`_record_dtype`).
RECORD_DTYPE = _record_dtype()

#: Error kind names, indexed by the ``error_kind`` field of a record.
ERROR_KINDS: list[str] = list(_core.ERROR_KINDS)
FLAG_TOKENS_ESTIMATED = _core.FLAG_TOKENS_ESTIMATED
FLAG_NEW_CONNECTION = _core.FLAG_NEW_CONNECTION
FLAG_UNDER_GENERATED = _core.FLAG_UNDER_GENERATED
FLAG_USER_STAMPS = _core.FLAG_USER_STAMPS


def now_ns() -> int:
    """The monotonic clock (CLOCK_MONOTONIC, ns) that every record's timestamps use."""
    return _core.now_ns()


def default_workers() -> int:
    """One worker per two cores (the server under test often shares the machine), at least one."""
    return max(1, min(16, (os.cpu_count() or 2) // 2))


@dataclass
class Snapshot:
    """A point-in-time view of the engine (totals since start). Histograms are ``_core.HistogramSnapshot``."""

    taken_ns: int
    agents_target: int
    agents_live: int
    agents_active: int
    agents_engaged: int
    requests_in_flight: int
    requests_started: int
    requests_ok: int
    requests_failed: int
    requests_by_kind: dict[str, int]
    output_events: int
    output_tokens: int
    records_dropped: int
    connections_open: int
    connections_opened: int
    last_connection_error: str
    ttft_ns: Any
    itl_ns: Any
    e2e_ns: Any
    output_speed_mtps: Any
    #: per output event: kernel receive stamp → the client saw the bytes (client-added delay)
    client_delay_ns: Any


class Engine:
    """Closed-loop replay of a workload against one endpoint at a settable concurrency.

    ``protocol``: ``"h1"``, ``"h2"`` (h2c with prior knowledge on http://, h2 on https://) or
    ``"auto"`` (ALPN over TLS, h2 preferred; HTTP/1.1 on plain http://). https:// verifies the
    certificate unless ``insecure``; ``ca_file`` adds trusted CAs. HTTP/2 multiplexes up to
    ``streams_per_connection`` agents per connection.

    ``seed`` seeds every agent's own random stream (conversation, start turn, tool delays);
    ``run_nonce`` is mixed into the cache-isolation prefixes with the seed, so a second run with the
    same seed does not meet the first one's prefix cache.

    ``spawn_interval_s`` is the minimum gap between agent arrivals when the concurrency rises (a
    ramp; 0 adds them all at once).

    Faults: ``request_timeout_s`` bounds a request from its scheduled time to its end (``timeout``).
    ``stream_idle_timeout_s`` bounds the silence on a stream once its response headers arrived
    (``idle_timeout``; 0: off): a server that stops mid-stream is seen in that time, not at the
    request timeout. A refused connect is retried with capped exponential backoff per agent
    (``connect_retry_s`` doubling up to ``connect_retry_max_s``, jittered), every attempt a
    ``connect`` record. One SSE event over ``max_event_bytes`` (or response headers over 64 KiB)
    ends its request as ``oversized``. HTTP status failures (5xx, 429) are counted, never retried.

    Timing: with ``kernel_stamps`` (the default) every response byte is stamped with the time the
    kernel received it (``SO_TIMESTAMPNS``, converted to CLOCK_MONOTONIC at the read; see
    ``cpp/src/client/read_stamp.h``), so TTFT and ITL do not grow when the client's CPU is busy. The
    wait between that stamp and the client seeing the bytes is the client-added delay: per record
    (``client_delay_us``, the most of any of its reads) and per output event (the snapshot's
    ``client_delay_ns`` histogram). A read without a kernel stamp falls back to the user-space
    stamp and flags the record ``FLAG_USER_STAMPS``.

    ``request_id_base`` is OR'd into every request id (``X-Request-Id``): engines that share one
    server (shards) give each a distinct base (:func:`agentperf_native.shards.spec.request_id_base`).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Every method releases the
    GIL while the native side works; none blocks longer than a thread join.
    """

    def __init__(self, url: str | Endpoint, workload: EncodedWorkload, concurrency: int = 0, *,
                 workers: int | None = None, api_key: str | None = None, request_timeout_s: float = 600.0,
                 seed: int = 1, random_start_turn: bool = True, cache_isolation: bool = True,
                 spawn_interval_s: float = 0.0, history: str | None = None, protocol: str = "auto",
                 ca_file: str | None = None, insecure: bool = False, streams_per_connection: int = 100,
                 run_nonce: int = 0, stream_idle_timeout_s: float = 60.0, connect_retry_s: float = 0.1,
                 connect_retry_max_s: float = 5.0, max_event_bytes: int = 1 << 20, kernel_stamps: bool = True,
                 request_id_base: int = 0) -> None:
        self.endpoint = url if isinstance(url, Endpoint) else Endpoint.parse(url)
        self.workload = workload
        self.workers = workers or default_workers()
        if request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be > 0")
        if stream_idle_timeout_s < 0:
            raise ValueError("stream_idle_timeout_s must be >= 0 (0: off)")
        if connect_retry_s <= 0 or connect_retry_max_s < connect_retry_s:
            raise ValueError("connect_retry_s must be > 0 and connect_retry_max_s >= connect_retry_s")
        self._core = _core.Engine(
            workload.core,
            host=self.endpoint.host,
            port=self.endpoint.port,
            authorization=f"Bearer {api_key}" if api_key else "",
            workers=self.workers,
            request_timeout_ns=int(request_timeout_s * 1e9),
            stream_idle_timeout_ns=int(stream_idle_timeout_s * 1e9),
            connect_retry_ns=int(connect_retry_s * 1e9),
            connect_retry_max_ns=int(connect_retry_max_s * 1e9),
            max_event_bytes=int(max_event_bytes),
            seed=seed,
            random_start_turn=random_start_turn,
            cache_isolation=cache_isolation,
            spawn_interval_ns=int(spawn_interval_s * 1e9),
            history_generated=(history or workload.policy.history) == "generated",
            protocol="h1" if protocol == "auto" and self.endpoint.scheme == "http" else protocol,
            tls=self.endpoint.scheme == "https",
            tls_verify=not insecure,
            ca_file=ca_file or "",
            streams_per_connection=streams_per_connection,
            run_nonce=run_nonce,
            kernel_stamps=kernel_stamps,
            request_id_base=int(request_id_base),
        )
        self._core.set_concurrency(int(concurrency))

    def start(self) -> "Engine":
        self._core.start()
        return self

    def stop(self) -> None:
        """Stops every worker; in-flight requests become ``cancelled`` records (drain them after)."""
        self._core.stop()

    def set_concurrency(self, agents: int) -> None:
        if agents < 0:
            raise ValueError("concurrency must be >= 0")
        self._core.set_concurrency(int(agents))

    @property
    def concurrency(self) -> int:
        return self._core.concurrency

    def new_isolation_epoch(self) -> None:
        """Gives every agent a fresh cache-isolation prefix from its next request on (a new phase)."""
        self._core.isolation_epoch = self._core.isolation_epoch + 1

    @property
    def running(self) -> bool:
        return self._core.running

    def snapshot(self) -> Snapshot:
        return Snapshot(**self._core.snapshot())

    def drain_records(self) -> np.ndarray:
        """Records finished since the last call, as a structured array of :data:`RECORD_DTYPE`."""
        raw = self._core.drain_records()
        return raw.reshape(-1).view(RECORD_DTYPE) if raw.size else np.empty(0, dtype=RECORD_DTYPE)

    def first_failures(self) -> list[dict[str, Any]]:
        """The first failed request of each (kind, HTTP status) since the engine was made, earliest
        first: ``kind``, ``http_status``, ``conversation``, ``turn``, ``max_tokens``, ``agent_id``,
        ``request_id``, ``scheduled_ns``, ``done_ns``, ``output_events`` and ``body``: what the server
        sent (at most 4 KiB, decoded as UTF-8 with replacement): an HTTP status failure's error, a
        malformed or error event's data, else the start of the response body."""
        out = self._core.first_failures()
        for f in out:
            f["body"] = f["body"].decode("utf-8", "replace")
        return out

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
