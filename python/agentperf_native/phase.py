"""One fixed-concurrency phase: run N agents for a duration and summarise what they measured.

The phase judges the requests *scheduled* inside ``[start, start + duration)``: when the duration is
over, no new request is sent (agents leave after their in-flight request), the phase waits for the
requests already started to finish, and only then stops the engine. A request still in flight when
the drain limit runs out becomes a ``cancelled`` record and counts as failed: nothing is silently
dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .engine import ERROR_KINDS, FLAG_TOKENS_ESTIMATED, FLAG_UNDER_GENERATED, Engine, Snapshot, now_ns
from .results import RecordWriter


@dataclass
class PhaseSummary:
    concurrency: int
    duration_s: float
    requests_total: int
    requests_ok: int
    requests_failed: int
    failures_by_kind: dict[str, int]
    output_tokens_total: int
    ttft_s: dict[str, float | None]
    output_speed_tps: dict[str, float | None]
    e2e_s: dict[str, float | None]
    itl_s: dict[str, float | None]
    throughput_output_tps: float
    requests_under_generated: int
    requests_tokens_estimated: int
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def _pct(values: np.ndarray, percentiles: dict[str, float], scale: float) -> dict[str, float | None]:
    if values.size == 0:
        return {k: None for k in percentiles}
    return {k: float(np.percentile(values, p)) * scale for k, p in percentiles.items()}


def summarize(records: np.ndarray, *, concurrency: int, window_start_ns: int, window_end_ns: int,
              interrupted: bool = False) -> PhaseSummary:
    """Statistics of the requests scheduled in ``[window_start_ns, window_end_ns)``.

    TTFT = first output event − scheduled time; output speed = (output_tokens − 1) / (last − first
    output event); percentiles are numpy's linear interpolation over per-request values.
    """
    sel = records[(records["scheduled_ns"] >= window_start_ns) & (records["scheduled_ns"] < window_end_ns)]
    ok = sel[sel["error_kind"] == 0]
    kinds = np.bincount(sel["error_kind"], minlength=len(ERROR_KINDS))
    failures = {ERROR_KINDS[k]: int(n) for k, n in enumerate(kinds) if k != 0 and n}
    ttft = (ok["first_token_ns"] - ok["scheduled_ns"]).astype(np.float64)
    e2e = (ok["done_ns"] - ok["scheduled_ns"]).astype(np.float64)
    span = (ok["last_token_ns"] - ok["first_token_ns"]).astype(np.float64)
    has_speed = (ok["output_tokens"] > 1) & (span > 0)
    speed = (ok["output_tokens"][has_speed] - 1) / (span[has_speed] * 1e-9)
    itl = span[has_speed] / (ok["output_tokens"][has_speed] - 1)
    duration_s = (window_end_ns - window_start_ns) / 1e9
    tokens = int(ok["output_tokens"].sum())
    notes = []
    if len(sel) == 0:
        notes.append("no request was scheduled in the window")
    elif len(ok) < len(sel):
        notes.append(f"{len(sel) - len(ok)} of {len(sel)} requests failed: " +
                     ", ".join(f"{k} {n}" for k, n in failures.items()))
    return PhaseSummary(
        concurrency=concurrency,
        duration_s=duration_s,
        requests_total=int(len(sel)),
        requests_ok=int(len(ok)),
        requests_failed=int(len(sel) - len(ok)),
        failures_by_kind=failures,
        output_tokens_total=tokens,
        ttft_s=_pct(ttft, {"p50": 50, "p90": 90, "p95": 95, "p99": 99}, 1e-9),
        output_speed_tps=_pct(speed, {"p5": 5, "p25": 25, "p50": 50, "p75": 75}, 1.0),
        e2e_s=_pct(e2e, {"p50": 50, "p95": 95, "p99": 99}, 1e-9),
        itl_s=_pct(itl, {"p50": 50, "p95": 95}, 1e-9),
        throughput_output_tps=tokens / duration_s if duration_s > 0 else 0.0,
        requests_under_generated=int(np.count_nonzero(ok["flags"] & FLAG_UNDER_GENERATED)),
        requests_tokens_estimated=int(np.count_nonzero(ok["flags"] & FLAG_TOKENS_ESTIMATED)),
        interrupted=interrupted,
        notes=notes,
    )


ProgressFn = Callable[[float, Snapshot, str], None]


def run_phase(engine: Engine, concurrency: int, duration_s: float, *, writer: RecordWriter | None = None,
              drain_timeout_s: float | None = None, progress: ProgressFn | None = None,
              poll_s: float = 0.5) -> tuple[PhaseSummary, np.ndarray]:
    """Runs ``concurrency`` agents for ``duration_s`` on a started or stopped engine and stops it.

    Returns the summary and every record of the phase (window or not). ``writer`` receives records
    as they are drained, so an interrupted phase keeps what it measured. KeyboardInterrupt stops
    the engine, keeps the records and returns a summary marked ``interrupted``.
    """
    if drain_timeout_s is None:
        drain_timeout_s = 600.0
    chunks: list[np.ndarray] = []

    def drain() -> None:
        batch = engine.drain_records()
        if batch.size:
            chunks.append(batch)
            if writer:
                writer.write(batch)

    interrupted = False
    engine.set_concurrency(concurrency)
    start = now_ns()
    if not engine.running:
        engine.start()
    end = start + int(duration_s * 1e9)
    try:
        while (t := now_ns()) < end:
            time.sleep(min(poll_s, max(0.0, (end - t) / 1e9)))
            drain()
            if progress:
                progress((now_ns() - start) / 1e9, engine.snapshot(), "measuring")
        engine.set_concurrency(0)  # no new requests; in-flight ones finish
        drain_deadline = now_ns() + int(drain_timeout_s * 1e9)
        while now_ns() < drain_deadline:
            snap = engine.snapshot()
            # Every agent leaves after its in-flight request; none left means all have finished
            # (in_flight alone can read 0 before the workers have applied the new concurrency).
            if snap.agents_live == 0 and snap.requests_in_flight == 0:
                break
            if progress:
                progress((now_ns() - start) / 1e9, snap, "draining")
            time.sleep(min(poll_s, 0.1))
            drain()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        engine.stop()
        drain()
    records = np.concatenate(chunks) if chunks else np.empty(0, dtype=engine.drain_records().dtype)
    summary = summarize(records, concurrency=concurrency, window_start_ns=start,
                        window_end_ns=min(end, now_ns()) if interrupted else end, interrupted=interrupted)
    if interrupted:
        summary.notes.append("interrupted: the phase did not run its full duration")
    return summary, records
