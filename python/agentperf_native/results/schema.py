"""The results schema, defined once: a probe, a tier's result, the validity verdict, the summary.

A search probe and a fixed phase write the same :class:`Probe` record (a fixed phase is a probe
with no tiers). ``phases.json`` holds ``{"probes": [Probe, ...]}``; ``summary.json`` holds a
:class:`Summary`. The writers (``runner``) and the reader (``report``) both use these classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from .. import client_check
from ..measure import WindowStats

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Builds a schema object from its JSON form; unknown keys (newer writers) are ignored."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Probe(WindowStats):
    """One measured concurrency level: its window's :class:`~agentperf_native.measure.WindowStats`
    plus what the probe was and how it went."""

    index: int = 0
    phase: str = "fixed"             #: "ramp", "bisect" or "fixed" (run --concurrency)
    concurrency: int = 0
    state: str = "done"              #: "measuring" while its window is open (a killed run leaves it so)
    steady: bool = False
    not_steady_reason: str | None = None
    window_start_s: float = 0.0      #: relative to the run's time origin
    window_end_s: float = 0.0
    window_start_ns: int = 0         #: the engine's monotonic clock (records use it)
    window_end_ns: int = 0
    tier_pass: dict[str, bool] = field(default_factory=dict)
    power: dict | None = None
    server_metrics: dict | None = None
    client: dict | None = None  #: the client's self-check in the window (client_check.figures)
    shards: list[dict] | None = None  #: per shard: requests scheduled in the window, counted on its own clock

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TierResult:
    name: str
    min_output_speed_tps: float | None
    max_ttft_s: float | None
    max_agents: int = 0
    probe_index: int | None = None   #: the probe at the maximum
    first_fail: int | None = None    #: the smallest concurrency that failed above the maximum
    throughput_output_tps: float | None = None
    stop_reason: str = ""
    agents_per_accelerator: float | None = None
    agents_per_system: float | None = None
    agents_per_mw: float | None = None
    agents_per_dollar_hour: float | None = None
    mean_power_w: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Validity:
    valid: bool = True
    problems: list[str] = field(default_factory=list)
    error_rate: float = 0.0
    under_generated: int = 0
    context_overflows: int = 0
    client_saturated: bool = False
    window_rules_met: bool = True


@dataclass
class Summary:
    mode: str                        #: "search" or "phase"
    complete: bool
    interrupted: bool
    endpoint: str
    model: str
    stop_reason: str
    tiers: list[dict] = field(default_factory=list)
    probes: int = 0
    validity: dict = field(default_factory=dict)
    accelerators: int | None = None
    records_written: int = 0
    phase: dict | None = None        #: mode "phase": the one probe's record
    power: dict | None = None
    notes: list[str] = field(default_factory=list)
    stopped_early: str | None = None  #: the verdict when the run stopped itself (--stop-after-failing)

    def to_dict(self) -> dict:
        return asdict(self)


def validity_of(probes: list[Probe], *, interrupted: bool, stopped_early: str | None = None,
                max_error_rate: float = 0.01) -> Validity:
    """The verdict over a run's probes: error rate, under-generation, length refusals, a
    client-bound window (the client's self-check, :mod:`agentperf_native.client_check`), window
    rules, interruption."""
    problems: list[str] = []
    steady = [p for p in probes if p.steady]
    error_rate = max((p.error_rate for p in steady), default=0.0)
    if error_rate > max_error_rate:
        problems.append(f"error rate up to {error_rate:.1%} in a steady window")
    under = sum(p.requests_under_generated for p in probes)
    if under:
        problems.append(f"{under} requests generated fewer tokens than asked")
    overflows = sum(p.context_overflows for p in probes)
    if overflows:
        problems.append(f"{overflows} requests were refused for their length (HTTP 400/413)")
    bound = [(p, client_check.bound_by(p.client or {"send_lateness_p99_ms": p.send_lateness_p99_ms}))
             for p in probes]
    bound = [(p, why) for p, why in bound if why]
    saturated = bool(bound)
    if saturated:
        problems.append("client-bound: " + "; ".join(f"{', '.join(why)} at {p.concurrency} agents"
                                                     for p, why in bound[:3]) + f" — {client_check.ADVICE}")
    not_steady = [p for p in probes if not p.steady]
    if not_steady:
        problems.append(f"{len(not_steady)} probe(s) never reached steady state: " +
                        "; ".join(f"c={p.concurrency}: {p.not_steady_reason}" for p in not_steady[:3]))
    if interrupted:
        problems.append("the run was interrupted")
    if stopped_early:
        problems.append(stopped_early)
    return Validity(valid=not problems, problems=problems, error_rate=error_rate, under_generated=under,
                    context_overflows=overflows, client_saturated=saturated, window_rules_met=not not_steady)
