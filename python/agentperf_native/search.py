"""Steady-state probes and the capacity search (AA-AgentPerf rules, as options).

A probe runs N agents: it drains the previous probe's agents, gives every agent a fresh
cache-isolation prefix (a new isolation epoch), starts N agents (each at a random turn of a random
trajectory), waits until all N are active (have sent a request) plus the warm-up, then measures a
steady window. The window lasts at least ``window_s`` and is extended until the agents have started
``min_requests_per_agent`` requests each on average and the trajectory rules are met (or
``max_window_s`` runs out: then the probe is not steady and cannot pass). The SLO is judged
on the requests *started* inside the window, waiting for them to finish; failed and timed-out
requests count as violations (speed 0, TTFT infinite).

The search probes an exponential ramp (start, 2×start, 4×start, …) until every tier has failed (or
the ceiling is reached), then bisects between each tier's last pass and first fail until the gap is
within the resolution. One probe judges every tier, so tiers share probes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .engine import ERROR_KINDS, FLAG_UNDER_GENERATED, Engine, Snapshot, now_ns
from .results import RecordWriter
from .tiers import Tier

_KIND = {name: i for i, name in enumerate(ERROR_KINDS)}


@dataclass
class PhaseRules:
    warmup_s: float = 10.0  # every agent active at least this long before the window opens
    window_s: float = 30.0  # minimum steady window (quick interactive default; --profile aa: 10 min)
    min_trajectories: int = 0  # trajectories completed inside the window, all agents together
    min_trajectories_per_agent: int = 0
    min_requests_per_agent: float = 1.0  # requests started in the window, per agent on average
    max_window_s: float | None = None  # give up extending the window (default 4 × window_s)
    activation_timeout_s: float = 120.0  # all agents must be active within this
    drain_timeout_s: float = 600.0  # wait for requests started in the window to finish

    @classmethod
    def aa(cls) -> "PhaseRules":
        """The AA-AgentPerf rules: ≥ 30 s warm-up, ≥ 10 min window, ≥ 30 trajectories, ≥ 3 per agent."""
        return cls(warmup_s=30.0, window_s=600.0, min_trajectories=30, min_trajectories_per_agent=3,
                   max_window_s=3 * 3600.0)

    @property
    def window_limit_s(self) -> float:
        return self.max_window_s if self.max_window_s is not None else 4 * self.window_s


@dataclass
class Probe:
    index: int
    phase: str  # "ramp" or "bisect"
    concurrency: int
    steady: bool = False
    not_steady_reason: str | None = None
    window_start_s: float = 0.0  # relative to the run's time origin
    window_end_s: float = 0.0
    requests: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    error_rate: float = 0.0
    ttft_s: dict[str, float | None] = field(default_factory=dict)
    output_speed_tps: dict[str, float | None] = field(default_factory=dict)
    slo_ttft_p95_s: float | None = None
    slo_output_speed_p25_tps: float | None = None
    throughput_output_tps: float = 0.0
    trajectories_completed: int = 0
    min_trajectories_per_agent: int = 0
    requests_under_generated: int = 0
    context_overflows: int = 0
    send_lateness_p99_ms: float | None = None
    tier_pass: dict[str, bool] = field(default_factory=dict)
    power: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _pct(values: np.ndarray, p: float, method: str = "linear") -> float | None:
    return float(np.percentile(values, p, method=method)) if values.size else None


def judge_window(records: np.ndarray, *, turns_per_conversation: list[int], window_start_ns: int,
                 window_end_ns: int, agents: int) -> dict:
    """Statistics of the requests started in the window (see the module docstring)."""
    sel = records[(records["scheduled_ns"] >= window_start_ns) & (records["scheduled_ns"] < window_end_ns)]
    ok = sel[sel["error_kind"] == 0]
    n, n_ok = len(sel), len(ok)
    ttft_ok = (ok["first_token_ns"] - ok["scheduled_ns"]) / 1e9
    span = (ok["last_token_ns"] - ok["first_token_ns"]) / 1e9
    has_speed = (ok["output_tokens"] > 1) & (span > 0)
    speed_ok = np.where(has_speed, (ok["output_tokens"] - 1) / np.where(span > 0, span, 1), np.inf)
    # SLO view: failures are violations.
    failed = n - n_ok
    slo_ttft = np.concatenate([ttft_ok, np.full(failed, np.inf)])
    slo_speed = np.concatenate([speed_ok, np.zeros(failed)])
    kinds = np.bincount(sel["error_kind"], minlength=len(ERROR_KINDS))
    # Trajectories completed: successful requests of a conversation's last turn.
    last_turn = np.asarray(turns_per_conversation, dtype=np.int64)[ok["conversation"]] - 1
    done = ok[ok["turn"] == last_turn]
    agents_seen = np.unique(sel["agent_id"])
    done_agents, done_counts = np.unique(done["agent_id"], return_counts=True)
    per_agent = dict(zip(done_agents.tolist(), done_counts.tolist()))
    min_per_agent = min(per_agent.get(a, 0) for a in agents_seen.tolist()) if len(agents_seen) >= agents else 0
    duration = (window_end_ns - window_start_ns) / 1e9
    lateness = (sel["sent_ns"][sel["sent_ns"] > 0] - sel["scheduled_ns"][sel["sent_ns"] > 0]) / 1e6
    return {
        "requests": n,
        "requests_ok": n_ok,
        "requests_failed": failed,
        "failures_by_kind": {ERROR_KINDS[k]: int(c) for k, c in enumerate(kinds) if k and c},
        "error_rate": failed / n if n else 0.0,
        "ttft_s": {"p50": _pct(ttft_ok, 50), "p95": _pct(ttft_ok, 95), "p99": _pct(ttft_ok, 99)},
        "output_speed_tps": {"p25": _pct(speed_ok[np.isfinite(speed_ok)], 25),
                             "p50": _pct(speed_ok[np.isfinite(speed_ok)], 50)},
        # Order statistics (no interpolation toward an infinite violation).
        "slo_ttft_p95_s": _pct(slo_ttft, 95, "inverted_cdf") if n else None,
        "slo_output_speed_p25_tps": _pct(slo_speed, 25, "inverted_cdf") if n else None,
        "throughput_output_tps": _window_throughput(records, window_start_ns, window_end_ns),
        "trajectories_completed": int(len(done)),
        "min_trajectories_per_agent": int(min_per_agent),
        "requests_under_generated": int(np.count_nonzero(ok["flags"] & FLAG_UNDER_GENERATED)),
        "context_overflows": int(np.count_nonzero((sel["error_kind"] == _KIND["http_status"]) &
                                                  np.isin(sel["http_status"], (400, 413)))),
        "send_lateness_p99_ms": _pct(lateness, 99),
    }


def _window_throughput(records: np.ndarray, start_ns: int, end_ns: int) -> float:
    """Output tokens per second generated inside the window: each successful request's tokens are
    spread evenly between its first and last output event and clipped to the window."""
    ok = records[(records["error_kind"] == 0) & (records["last_token_ns"] > start_ns) &
                 (records["first_token_ns"] < end_ns)]
    if not len(ok) or end_ns <= start_ns:
        return 0.0
    first = ok["first_token_ns"].astype(np.float64)
    last = ok["last_token_ns"].astype(np.float64)
    span = np.maximum(last - first, 1.0)
    overlap = np.clip(np.minimum(last, end_ns) - np.maximum(first, start_ns), 0, None)
    inside = np.where(last > first, overlap / span, ((first >= start_ns) & (first < end_ns)).astype(np.float64))
    return float((ok["output_tokens"] * inside).sum() / ((end_ns - start_ns) / 1e9))


ProbeProgress = Callable[[Probe, str, float, Snapshot], None]


class ProbeRunner:
    """Runs probes on one engine, keeping every record (and streaming them to a writer)."""

    def __init__(self, engine: Engine, tiers: list[Tier], rules: PhaseRules, turns_per_conversation: list[int],
                 *, origin_ns: int, writer: RecordWriter | None = None, progress: ProbeProgress | None = None,
                 poll_s: float = 0.25, power=None) -> None:
        self.engine = engine
        self.tiers = tiers
        self.rules = rules
        self.turns = turns_per_conversation
        self.origin_ns = origin_ns
        self.writer = writer
        self.progress = progress
        self.poll_s = poll_s
        self.power = power
        self.records: list[np.ndarray] = []
        self.probes: list[Probe] = []

    def _drain(self) -> np.ndarray:
        batch = self.engine.drain_records()
        if batch.size:
            self.records.append(batch)
            if self.writer:
                self.writer.write(batch)
        return batch

    def _tick(self, probe: Probe, stage: str, t0: int) -> Snapshot:
        time.sleep(self.poll_s)
        self._drain()
        snap = self.engine.snapshot()
        if self.progress:
            self.progress(probe, stage, (now_ns() - t0) / 1e9, snap)
        return snap

    def _stop_agents(self, probe: Probe, t0: int, timeout_s: float) -> bool:
        self.engine.set_concurrency(0)
        deadline = now_ns() + int(timeout_s * 1e9)
        while now_ns() < deadline:
            snap = self._tick(probe, "draining", t0)
            if snap.agents_live == 0 and snap.requests_in_flight == 0:
                return True
        return False

    def run(self, concurrency: int, phase: str) -> Probe:
        rules = self.rules
        probe = Probe(index=len(self.probes), phase=phase, concurrency=concurrency)
        t0 = now_ns()
        self._stop_agents(probe, t0, rules.drain_timeout_s)  # the previous probe's agents leave first
        self.engine.new_isolation_epoch()
        self.engine.set_concurrency(concurrency)
        if not self.engine.running:
            self.engine.start()
        # 1. every agent active (has sent a request)
        deadline = now_ns() + int(rules.activation_timeout_s * 1e9)
        while True:
            snap = self._tick(probe, "starting agents", t0)
            if snap.agents_engaged >= concurrency:
                break
            if now_ns() > deadline:
                probe.not_steady_reason = (f"only {snap.agents_engaged} of {concurrency} agents became active within "
                                           f"{rules.activation_timeout_s:g}s" +
                                           (f" ({snap.last_connection_error})" if snap.last_connection_error else ""))
                self._finish(probe, None, None, t0)
                return probe
        # 2. warm-up, 3. the window (extended until the trajectory rules hold, within the limit)
        window_start = now_ns() + int(rules.warmup_s * 1e9)
        while now_ns() < window_start:
            self._tick(probe, "warming up", t0)
        window_end = window_start + int(rules.window_s * 1e9)
        limit = window_start + int(rules.window_limit_s * 1e9)
        if self.power:
            self.power.mark(window_start)
        started_at_window = self.engine.snapshot().requests_started
        need_started = math.ceil(concurrency * rules.min_requests_per_agent)
        while True:
            snap = self._tick(probe, "measuring", t0)
            if now_ns() < window_end:
                continue
            started = snap.requests_started - started_at_window
            stats = None
            if rules.min_trajectories or rules.min_trajectories_per_agent:
                stats = judge_window(self._all(), turns_per_conversation=self.turns, window_start_ns=window_start,
                                     window_end_ns=now_ns(), agents=concurrency)
            if started >= need_started and (stats is None or (
                    stats["trajectories_completed"] >= rules.min_trajectories and
                    stats["min_trajectories_per_agent"] >= rules.min_trajectories_per_agent)):
                break
            if now_ns() >= limit:
                probe.not_steady_reason = (
                    f"window rules not met in {rules.window_limit_s:g}s: {started} requests started (need "
                    f"{need_started})" + ("" if stats is None else
                                          f", {stats['trajectories_completed']} trajectories completed (need "
                                          f"{rules.min_trajectories}), at least {stats['min_trajectories_per_agent']}"
                                          f" per agent (need {rules.min_trajectories_per_agent})"))
                break
        window_end = min(now_ns(), limit)  # the window closes now (at or after its minimum length)
        if self.power:
            self.power.mark(window_end)
        # 4. the requests started in the window finish (agents leave after their request)
        if not self._stop_agents(probe, t0, rules.drain_timeout_s):
            probe.not_steady_reason = probe.not_steady_reason or "requests started in the window did not finish in time"
        self._finish(probe, window_start, window_end, t0)
        return probe

    def _all(self) -> np.ndarray:
        if not self.records:
            return np.empty(0, dtype=self.engine.drain_records().dtype)
        if len(self.records) > 1:
            self.records = [np.concatenate(self.records)]
        return self.records[0]

    def _finish(self, probe: Probe, window_start: int | None, window_end: int | None, t0: int) -> None:
        self._drain()
        if window_start is not None and window_end is not None:
            stats = judge_window(self._all(), turns_per_conversation=self.turns, window_start_ns=window_start,
                                 window_end_ns=window_end, agents=probe.concurrency)
            for k, v in stats.items():
                setattr(probe, k, v)
            probe.window_start_s = (window_start - self.origin_ns) / 1e9
            probe.window_end_s = (window_end - self.origin_ns) / 1e9
            if self.power:
                probe.power = self.power.window(window_start, window_end)
            if probe.requests == 0 and probe.not_steady_reason is None:
                probe.not_steady_reason = "no request started in the window"
        probe.steady = probe.not_steady_reason is None
        probe.tier_pass = {t.name: probe.steady and t.passes(probe.slo_output_speed_p25_tps, probe.slo_ttft_p95_s)
                           for t in self.tiers}
        self.probes.append(probe)


@dataclass
class TierResult:
    name: str
    min_output_speed_tps: float
    max_ttft_s: float
    max_agents: int = 0
    probe_index: int | None = None
    throughput_output_tps: float | None = None
    stop_reason: str = ""
    first_fail: int | None = None


@dataclass
class SearchResult:
    tiers: list[TierResult]
    probes: list[Probe]
    stop_reason: str
    interrupted: bool = False


def _resolved(last_pass: int, first_fail: int | None, resolution: float) -> bool:
    if first_fail is None:
        return False
    return first_fail - last_pass <= max(1, math.floor(last_pass * resolution))


def search(runner: ProbeRunner, *, start: int = 1, max_concurrency: int = 4096, resolution: float = 0.0,
           max_error_rate: float = 0.5, on_probe: Callable[[Probe, "SearchResult"], None] | None = None) -> SearchResult:
    """Exponential ramp, then bisection per tier (shared probes). ``resolution``: stop when the
    gap between a tier's last pass and first fail is at most max(1, resolution × last pass)."""
    if start < 1 or max_concurrency < start:
        raise ValueError("need 1 <= start concurrency <= max concurrency")
    tiers = runner.tiers
    last_pass = {t.name: 0 for t in tiers}
    first_fail: dict[str, int | None] = {t.name: None for t in tiers}
    best_probe: dict[str, Probe | None] = {t.name: None for t in tiers}
    result = SearchResult(tiers=[], probes=runner.probes, stop_reason="")
    tried: dict[int, Probe] = {}

    def probe_at(c: int, phase: str) -> Probe:
        p = runner.run(c, phase)
        tried[c] = p
        for t in tiers:
            if p.tier_pass[t.name]:
                if c > last_pass[t.name]:
                    last_pass[t.name], best_probe[t.name] = c, p
            elif first_fail[t.name] is None or c < first_fail[t.name]:
                first_fail[t.name] = c
        if on_probe:
            on_probe(p, result)
        return p

    stop = ""
    try:
        c = start
        while True:  # the ramp
            p = probe_at(c, "ramp")
            if p.steady and p.error_rate > max_error_rate:
                stop = f"server errors: {p.error_rate:.0%} of requests failed at concurrency {c}"
                break
            if all(first_fail[t.name] is not None for t in tiers):
                break
            if c >= max_concurrency:
                stop = f"ceiling reached: --max-concurrency {max_concurrency}"
                break
            c = min(c * 2, max_concurrency)
        while not stop:  # the bisection, one tier at a time (widest gap first)
            open_tiers = [t for t in tiers if first_fail[t.name] is not None and last_pass[t.name] > 0
                          and not _resolved(last_pass[t.name], first_fail[t.name], resolution)]
            if not open_tiers:
                break
            t = max(open_tiers, key=lambda t: first_fail[t.name] - last_pass[t.name])
            mid = (last_pass[t.name] + first_fail[t.name]) // 2
            if mid in tried:  # already measured (by another tier's bisection): apply and go on
                break
            p = probe_at(mid, "bisect")
            if p.steady and p.error_rate > max_error_rate:
                stop = f"server errors: {p.error_rate:.0%} of requests failed at concurrency {mid}"
    except KeyboardInterrupt:
        result.interrupted = True
        stop = "interrupted"
    for t in tiers:
        lp, ff, bp = last_pass[t.name], first_fail[t.name], best_probe[t.name]
        if result.interrupted:
            reason = "interrupted"
        elif lp == 0:
            reason = f"never passed (failed at concurrency {ff})" if ff else "never passed"
        elif ff is None:
            reason = f"ceiling reached: passes at {lp}"
        elif _resolved(lp, ff, resolution):
            reason = f"resolution reached: passes at {lp}, fails at {ff}"
        else:
            reason = stop or "stopped"
        result.tiers.append(TierResult(
            name=t.name, min_output_speed_tps=t.min_output_speed_tps, max_ttft_s=t.max_ttft_s, max_agents=lp,
            probe_index=bp.index if bp else None, throughput_output_tps=bp.throughput_output_tps if bp else None,
            stop_reason=reason, first_fail=ff))
    result.stop_reason = stop or "every tier resolved"
    return result
