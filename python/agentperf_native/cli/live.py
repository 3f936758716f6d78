"""The live line: the probe in progress, its stage and its window's figures so far.

Window figures come from the probe's own :class:`~agentperf_native.measure.WindowMeter` (the same
function that judges the window at its end; :meth:`~agentperf_native.measure.WindowMeter.live`,
which never rescans a long window), never from run-wide totals. Rewritten in place on a
terminal (twice a second), one line every 10 s otherwise.
"""

from __future__ import annotations

import sys
import time

from ..durations import format_duration
from ..results.schema import Probe
from ..runner import Display
from .common import fmt_ms, fmt_num


class LiveLine(Display):
    def __init__(self, fixed_duration_s: float | None = None) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.verdicts: list[str] = []
        self.fixed_duration_s = fixed_duration_s

    def tick(self, state, snap, now_ns: int) -> None:
        now = time.monotonic()
        if now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        p = state.probe
        head = (f"[c={p.concurrency} {p.phase}]" if self.fixed_duration_s is not None
                else f"[probe {p.index} {p.phase} c={p.concurrency}]")
        line = (f"{head} {state.stage} {(now_ns - state.started_ns) / 1e9:5.1f}s agents "
                f"{snap.agents_engaged}/{p.concurrency} in-flight {snap.requests_in_flight}")
        if state.meter is not None and state.meter.end_ns is None:
            w = state.meter.live()
            total = f"/{format_duration(self.fixed_duration_s)}" if self.fixed_duration_s else ""
            recent = " (recent requests)" if w["recent_only"] else ""
            line += (f" | window {max(0, now_ns - state.meter.start_ns) / 1e9:.0f}s{total}: {w['requests']} requests"
                     + (f" ({w['requests_failed']} failed)" if w["requests_failed"] else "")
                     + f", P25{recent} {fmt_num(w['slo_output_speed_p25_tps'])} tok/s, "
                       f"P95 TTFT {fmt_ms(w['slo_ttft_p95_s'])}")
        if self.verdicts:
            line += f" | {' '.join(self.verdicts[-4:])}"
        sys.stderr.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def probe_done(self, probe: Probe) -> None:
        marks = " ".join(f"{name}:{'pass' if ok else 'FAIL'}" for name, ok in probe.tier_pass.items())
        state = "" if probe.steady else f" (not steady: {probe.not_steady_reason})"
        sys.stderr.write(("\r\x1b[2K" if self.tty else "") +
                         f"probe {probe.index} {probe.phase} c={probe.concurrency}: P25 "
                         f"{fmt_num(probe.slo_output_speed_p25_tps)} tok/s, P95 TTFT "
                         f"{fmt_num(probe.slo_ttft_p95_s)} s, {probe.requests} requests, "
                         f"{probe.requests_failed} failed" + (f" -> {marks}" if marks else "") + f"{state}\n")
        if probe.tier_pass:
            self.verdicts.append(f"c={probe.concurrency}:{sum(probe.tier_pass.values())}/{len(probe.tier_pass)}")

    def log(self, line: str) -> None:
        sys.stderr.write(("\r\x1b[2K" if self.tty else "") + line + "\n")
