"""Probes: one concurrency level measured in a steady window (AA-AgentPerf rules, as options).

A probe drains the previous probe's agents, gives every agent a fresh cache-isolation prefix (a
new isolation epoch), starts N agents (each at a random turn of a random trajectory), waits until
all N are active (have sent a request) plus the warm-up, then measures a window. The window lasts
at least ``window_s`` and is extended until the agents have started ``min_requests_per_agent``
requests each on average and the trajectory rules are met (or ``max_window_s`` runs out: then the
probe is not steady and cannot pass). The requests started inside the window are then waited for,
and :mod:`~agentperf_native.measure` turns the window into numbers.

A fixed phase (``run --concurrency N --duration D``) is the same probe with no tiers, no warm-up
unless asked, and a window of exactly D opening when the agents start: :meth:`PhaseRules.fixed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import numpy as np

from . import client_check
from .client_check import WindowCpu
from .engine import Snapshot, now_ns
from .measure import WindowMeter
from .orchestrate import Interrupted, Orchestrator
from .results.schema import Probe
from .tiers import Tier


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
    wait_for_active: bool = True  # the window opens only once every agent has sent a request

    @classmethod
    def aa(cls) -> "PhaseRules":
        """The AA-AgentPerf rules: ≥ 30 s warm-up, ≥ 10 min window, ≥ 30 trajectories, ≥ 3 per agent."""
        return cls(warmup_s=30.0, window_s=600.0, min_trajectories=30, min_trajectories_per_agent=3,
                   max_window_s=3 * 3600.0)

    @classmethod
    def fixed(cls, duration_s: float, *, warmup_s: float = 0.0, drain_timeout_s: float = 600.0) -> "PhaseRules":
        """A fixed phase: a window of exactly ``duration_s`` from the moment the agents are started
        (+ ``warmup_s``); connection failures of agents that never got to send count in it."""
        return cls(warmup_s=warmup_s, window_s=duration_s, min_requests_per_agent=0.0, max_window_s=duration_s,
                   drain_timeout_s=drain_timeout_s, wait_for_active=False)

    @property
    def window_limit_s(self) -> float:
        return self.max_window_s if self.max_window_s is not None else 4 * self.window_s


@dataclass
class ProbeState:
    """What the live line shows: the probe in progress, its stage and its open window's meter."""

    probe: Probe
    stage: str
    started_ns: int
    meter: WindowMeter | None = None


class ProbeRunner:
    """Runs probes on one engine through an :class:`~agentperf_native.orchestrate.Orchestrator`.

    ``on_update(probe)`` is called when a probe's window opens (state ``measuring``) and when it
    ends, so ``phases.json`` always holds the probe in progress. ``power`` (optional) is a
    :class:`~agentperf_native.power.PowerSampler` running on the same loop: each window's energy
    and mean power go into the probe record.
    """

    def __init__(self, orch: Orchestrator, tiers: list[Tier], rules: PhaseRules, turns_per_conversation: list[int],
                 *, origin_ns: int, on_update: Callable[[Probe], None] | None = None, power=None,
                 server_metrics=None) -> None:
        self.orch = orch
        self.engine = orch.engine
        self.tiers = tiers
        self.rules = rules
        self.turns = turns_per_conversation
        self.origin_ns = origin_ns
        self.on_update = on_update
        self.power = power
        self.server_metrics = server_metrics  # a server_metrics.ServerMetricsSampler on the same loop
        self.probes: list[Probe] = []
        self.current: ProbeState | None = None
        self._losses_seen = 0  # a sharded engine's losses before the probe in progress
        self.lost_probes: set[int] = set()  # probes during which a shard was lost

    def _stage(self, stage: str) -> None:
        if self.current:
            self.current.stage = stage

    async def stop_agents(self, timeout_s: float) -> bool:
        """Asks every agent to leave after its in-flight request and waits for them (True: all left)."""
        self.engine.set_concurrency(0)
        if not self.engine.running:
            return True
        deadline = now_ns() + int(timeout_s * 1e9)
        self._stage("draining")
        while True:
            snap = await self.orch.tick()
            # Every agent leaves after its in-flight request; none left means all have finished
            # (in_flight alone can read 0 before the workers have applied the new concurrency).
            if snap.agents_live == 0 and snap.requests_in_flight == 0:
                self.orch.drain()
                return True
            if now_ns() >= deadline:
                return False

    async def run(self, concurrency: int, phase: str) -> Probe:
        rules = self.rules
        probe = Probe(index=len(self.probes), phase=phase, concurrency=concurrency, state="starting")
        self.current = ProbeState(probe, "draining", now_ns())
        self._losses_seen = len(getattr(self.engine, "losses", ()))
        meter: WindowMeter | None = None
        try:
            if not await self.stop_agents(rules.drain_timeout_s):  # the previous probe's agents leave first
                probe.not_steady_reason = "the previous probe's requests did not finish in time"
            self.engine.new_isolation_epoch()
            self.engine.set_concurrency(concurrency)
            if not self.engine.running:
                self.engine.start()
            # 1. every agent active (has sent a request)
            self._stage("starting agents")
            deadline = now_ns() + int(rules.activation_timeout_s * 1e9)
            while rules.wait_for_active:
                snap = await self.orch.tick()
                if snap.agents_engaged >= concurrency or self._lost():
                    break
                if now_ns() > deadline:
                    probe.not_steady_reason = (
                        f"only {snap.agents_engaged} of {concurrency} agents became active within "
                        f"{rules.activation_timeout_s:g}s" +
                        (f" ({snap.last_connection_error})" if snap.last_connection_error else ""))
                    return self._finish(probe, None)
            # 2. warm-up
            window_start = now_ns() + int(rules.warmup_s * 1e9)
            self._stage("warming up")
            while now_ns() < window_start:
                await self.orch.tick()
            # 3. the window, extended until the rules hold (within the limit)
            meter = WindowMeter(window_start, turns_per_conversation=self.turns, agents=concurrency)
            # in this process, or inside each shard where the workers run there
            window_cpu = self.engine.window_cpu() if hasattr(self.engine, "window_cpu") else WindowCpu()
            self.orch.meters.add(meter)
            self.current.meter = meter
            probe.state = "measuring"
            self._set_window(probe, window_start, window_start)
            if self.on_update:
                self.on_update(probe)
            window_end = await self._measure(probe, meter, window_start, concurrency)
            meter.close(window_end)
            worker_cpu, worker_wait = window_cpu.close()
            probe.client = client_check.figures(worker_cpu, self.orch.loop_lag.between(window_start, window_end),
                                                None, worker_wait=worker_wait)
            # 4. the requests started in the window finish (agents leave after their request)
            if not await self.stop_agents(rules.drain_timeout_s):
                probe.not_steady_reason = probe.not_steady_reason or \
                    "requests started in the window did not finish in time"
            if self.power is not None:
                window = await self.power.window_settled(meter.start_ns, window_end, timeout_s=10.0)
                probe.power = window.to_dict()
            if self.server_metrics is not None:
                probe.server_metrics = await self.server_metrics.window_settled(meter.start_ns, window_end)
            return self._finish(probe, meter)
        except Interrupted as e:
            if meter is not None:
                if meter.end_ns is None:
                    meter.close(now_ns())
                self.orch.drain()
                probe.not_steady_reason = e.reason
                self._finish(probe, meter)
            raise
        finally:
            if meter is not None:
                self.orch.meters.discard(meter)

    async def _measure(self, probe: Probe, meter: WindowMeter, window_start: int, concurrency: int) -> int:
        rules = self.rules
        self._stage("measuring")
        window_end = window_start + int(rules.window_s * 1e9)
        limit = window_start + int(rules.window_limit_s * 1e9)
        started_at_window = self.engine.snapshot().requests_started
        need_started = math.ceil(concurrency * rules.min_requests_per_agent)
        while True:
            snap: Snapshot = await self.orch.tick()
            now = now_ns()
            if self._lost():
                return now
            if now < window_end:
                continue
            started = snap.requests_started - started_at_window
            rules_met = (meter.trajectories_completed >= rules.min_trajectories and
                         meter.min_trajectories_per_agent >= rules.min_trajectories_per_agent)
            if started >= need_started and rules_met:
                return min(now, limit)  # a fixed phase (limit = minimum) ends exactly at its duration
            if now >= limit:
                probe.not_steady_reason = (
                    f"window rules not met in {rules.window_limit_s:g}s: {started} requests started (need "
                    f"{need_started}), {meter.trajectories_completed} trajectories completed (need "
                    f"{rules.min_trajectories}), at least {meter.min_trajectories_per_agent} per agent (need "
                    f"{rules.min_trajectories_per_agent})")
                return limit

    def _lost(self) -> str | None:
        """Why the probe in progress lost agents (shards of a sharded engine that died), or None."""
        return "; ".join(getattr(self.engine, "losses", [])[self._losses_seen:]) or None

    def _set_window(self, probe: Probe, start_ns: int, end_ns: int) -> None:
        probe.window_start_ns, probe.window_end_ns = start_ns, end_ns
        probe.window_start_s = (start_ns - self.origin_ns) / 1e9
        probe.window_end_s = (end_ns - self.origin_ns) / 1e9

    def _finish(self, probe: Probe, meter: WindowMeter | None) -> Probe:
        if meter is not None:
            assert meter.end_ns is not None
            for name, value in meter.stats().to_dict().items():
                setattr(probe, name, value)
            if probe.client is not None:
                probe.client["send_lateness_p99_ms"] = probe.send_lateness_p99_ms
                probe.client["client_added_delay_ms"] = probe.client_delay_ms or None
            self._set_window(probe, meter.start_ns, meter.end_ns)
            if probe.requests == 0 and probe.not_steady_reason is None:
                probe.not_steady_reason = "no request started in the window"
            if hasattr(self.engine, "window_counts"):  # shards: each counts the window on its own clock
                probe.shards = self.engine.window_counts(meter.start_ns, meter.end_ns)
        lost = self._lost()
        if lost:
            self.lost_probes.add(probe.index)
            probe.not_steady_reason = lost + (f"; {probe.not_steady_reason}" if probe.not_steady_reason else "")
        probe.steady = probe.not_steady_reason is None
        probe.state = "done"
        probe.tier_pass = {t.name: probe.steady and t.passes(probe.slo_output_speed_p25_tps, probe.slo_ttft_p95_s)
                           for t in self.tiers}
        self.probes.append(probe)
        if self.on_update:
            self.on_update(probe)
        return probe


def run_phase(engine, concurrency: int, duration_s: float, *, warmup_s: float = 0.0,
              drain_timeout_s: float = 600.0, tick_s: float = 0.1) -> tuple[Probe, "np.ndarray"]:
    """Library form of a fixed phase: runs ``concurrency`` agents on ``engine`` (started or not) for
    a window of ``duration_s`` after they are all active (+ ``warmup_s``), waits for the window's
    requests, stops the engine and returns the probe record and every record drained (window or
    not). An interrupted phase (Ctrl-C) returns what it measured, marked not steady."""
    from .orchestrate import run_loop

    orch = Orchestrator(engine, tick_s=tick_s, keep_records=True)
    rules = PhaseRules.fixed(duration_s, warmup_s=warmup_s, drain_timeout_s=drain_timeout_s)

    async def main() -> Probe:
        async with orch:
            runner = ProbeRunner(orch, [], rules, [], origin_ns=now_ns())
            try:
                return await runner.run(concurrency, "fixed")
            except Interrupted:
                return runner.probes[-1] if runner.probes else Probe(concurrency=concurrency,
                                                                     not_steady_reason="interrupted")
            finally:
                engine.stop()
                orch.drain()

    probe = run_loop(main, on_signal=orch.interrupt)
    return probe, orch.records()
