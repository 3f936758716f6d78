"""``agentperf-native power probe [SOURCE]``: which devices a power source sees, what it can read
them with, and a short reading. On a machine without the source (no GPU, no ROCm, endpoint down)
the answer is one line saying why, never a traceback."""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from .sampler import PowerUnavailable, _one_line
from .spec import _detect_gpus, choose_sampler


def probe(spec: str | Sequence[str] = "auto", *, duration_s: float = 5.0, sim_metrics_url: str | None = None,
          accelerators: int | None = None, interval_s: float | None = None,
          detect: Callable[[], tuple[str, int] | None] = _detect_gpus) -> str:
    """The probe's text: the choice, the devices and their counters, then the mean power and
    energy over ``duration_s`` of sampling. Blocks for about ``duration_s``."""
    try:
        choice = choose_sampler(spec, sim_metrics_url=sim_metrics_url, accelerators=accelerators,
                                interval_s=interval_s, detect=detect)
    except ValueError as e:
        return f"power probe: {e}"
    except Exception as e:   # detection itself failed: still one line
        return f"power probe: {_one_line(e)}"
    sampler = choice.sampler
    if sampler is None:
        return choice.reason
    try:
        sampler.start()
    except PowerUnavailable as e:
        return str(e)
    except Exception as e:
        return f"{sampler.source}: {_one_line(e)}"
    try:
        threading.Event().wait(max(0.0, duration_s))
    finally:
        sampler.stop()
    assert sampler.started_ns is not None and sampler.stopped_ns is not None
    w = sampler.window(sampler.started_ns, sampler.stopped_ns)
    lines = [choice.reason,
             f"source {sampler.source}, boundary {sampler.boundary}, every {sampler.interval_s:g} s, "
             f"{len(sampler.devices)} device(s):"]
    lines += sampler.describe()
    mean = "-" if w.mean_w is None else f"{w.mean_w:.1f} W"
    energy = "-" if w.energy_j is None else f"{w.energy_j:.1f} J"
    lines.append(f"over {w.duration_s:.1f} s: {mean} in total, {energy}, method {w.method}, "
                 f"coverage {w.coverage:.1%}, largest gap {w.largest_gap_s:.2f} s"
                 + (f" (FLAGGED: {w.flag_reason})" if w.flagged else ""))
    for d in w.devices:
        dm = "-" if d.mean_w is None else f"{d.mean_w:.1f} W"
        cross = "" if d.sampled_mean_w is None else f" (sampled {d.sampled_mean_w:.1f} W)"
        lines.append(f"  device {d.index}: {dm}{cross}, {d.method}, {d.readings} readings")
    lines += [f"note: {n}" for n in w.notes]
    return "\n".join(lines)
