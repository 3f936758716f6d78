"""A shard's monotonic clock against the driver's, by round trips.

Each exchange: the driver reads its clock (``t0``), asks the shard for its clock (``ts``), reads its
clock again (``t1``). The shard read its clock somewhere in ``[t0, t1]``, so ``offset = (t0 + t1) / 2
- ts`` (driver time = shard time + offset) is off by at most ``(t1 - t0) / 2``. Of several
exchanges the one with the smallest round trip is kept; its half round trip is the uncertainty.

Two processes of one boot of one machine read the same CLOCK_MONOTONIC: their offset is exactly 0
(``same_host``: the shard's kernel boot id is the driver's), and no correction is applied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from ..engine import now_ns

#: A shard whose offset is known less precisely than this is flagged in the validity verdict.
UNCERTAINTY_LIMIT_NS = 5_000_000
PINGS = 16


def boot_id() -> str:
    """This machine's kernel boot id ('' where there is none): equal ids share CLOCK_MONOTONIC."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


@dataclass
class ClockSync:
    """The shard clock's offset to the driver's (driver = shard + offset_ns) and how well it is known."""

    offset_ns: int = 0
    uncertainty_ns: int = 0  # half the smallest round trip (0 on the same host)
    rtt_ns: int = 0
    measured_offset_ns: int = 0  # what the round trips gave (on the same host: not applied)
    same_host: bool = False
    syncs: int = 0
    offsets_seen_ns: list[int] = field(default_factory=list)  # one per sync: drift shows here

    @property
    def drift_ns(self) -> int:
        return max(self.offsets_seen_ns) - min(self.offsets_seen_ns) if self.offsets_seen_ns else 0

    @property
    def flagged(self) -> bool:
        return self.uncertainty_ns > UNCERTAINTY_LIMIT_NS

    def to_dict(self) -> dict:
        d = asdict(self)
        d["drift_ns"] = self.drift_ns
        d["flagged"] = self.flagged
        return d


def exchange(ask_clock: Callable[[], int], pings: int = PINGS) -> tuple[int, int]:
    """``(offset_ns, rtt_ns)`` of the fastest of ``pings`` round trips through ``ask_clock``."""
    best: tuple[int, int] | None = None
    for _ in range(pings):
        t0 = now_ns()
        ts = ask_clock()
        t1 = now_ns()
        rtt = t1 - t0
        if best is None or rtt < best[1]:
            best = ((t0 + t1) // 2 - ts, rtt)
    assert best is not None
    return best


def sync(sync_state: ClockSync, ask_clock: Callable[[], int], *, same_host: bool) -> ClockSync:
    """Measures the offset again and updates ``sync_state`` (the newest measurement is used)."""
    offset, rtt = exchange(ask_clock)
    sync_state.measured_offset_ns = offset
    sync_state.rtt_ns = rtt
    sync_state.same_host = same_host
    sync_state.offset_ns = 0 if same_host else offset
    sync_state.uncertainty_ns = 0 if same_host else max(sync_state.uncertainty_ns if sync_state.syncs else 0,
                                                        rtt // 2)
    sync_state.syncs += 1
    sync_state.offsets_seen_ns.append(offset)
    return sync_state
