"""Energy over an interval of the monotonic clock: the one place where power streams become joules.

Two kinds of stream, both as parallel sequences sorted by time (``times_ns`` strictly increasing):

- a cumulative **energy counter** (J since some origin): the energy over ``[a, b]`` is the
  counter interpolated at ``b`` minus the counter interpolated at ``a``. A decrease is a reset
  (driver reload, wrap): the reading after it counts as energy accumulated since the counter
  restarted from 0, and the reset is counted so the caller can say so.
- instantaneous **power samples** (W): the trapezoid rule, clipped exactly at ``a`` and ``b`` by
  interpolating the power at the edges. A gap between two samples longer than ``max_bridge_ns``
  is not bridged beyond that limit: each side holds its sample's power for half the limit and the
  rest of the gap is uncovered.

Every result says how much of the window it covers (``covered_ns``) and the largest gap between
readings inside the window, counting the stretch from the window's start to the first reading and
from the last reading to the window's end; :func:`assess` turns those into the validity flag
(coverage < 95 % or a gap > 3 s, as InferenceX rejects a gap > 3 s).

Pure functions, no I/O, no clock: the tests feed them synthetic streams with known energy.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Sequence

#: A window is flagged when its readings cover less than this fraction of it.
MIN_COVERAGE = 0.95
#: A window is flagged when two consecutive readings inside it are further apart than this.
MAX_GAP_S = 3.0
#: Power samples further apart than this are not bridged beyond it (see :func:`sample_energy`).
DEFAULT_MAX_BRIDGE_NS = 3_000_000_000


@dataclass(frozen=True)
class Integral:
    """The energy one stream gives over ``[start_ns, end_ns]``.

    ``energy_j`` is the energy over the covered part only; ``covered_ns`` is how much of the
    window the readings cover; ``largest_gap_ns`` the longest stretch of the window without a
    reading (edges included); ``resets`` how many counter decreases were seen inside it.
    """

    start_ns: int
    end_ns: int
    energy_j: float
    covered_ns: int
    largest_gap_ns: int
    readings: int
    resets: int = 0

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def coverage(self) -> float:
        """Fraction of the window covered, 0..1 (1 for an empty window that has a reading)."""
        if self.duration_ns <= 0:
            return 1.0 if self.readings else 0.0
        return min(1.0, self.covered_ns / self.duration_ns)

    @property
    def mean_w(self) -> float | None:
        """Mean power over the covered part, or None when nothing is covered."""
        if self.covered_ns <= 0:
            return None
        return self.energy_j / (self.covered_ns / 1e9)


def assess(coverage: float, largest_gap_s: float, *, min_coverage: float = MIN_COVERAGE,
           max_gap_s: float = MAX_GAP_S) -> tuple[bool, str | None]:
    """``(flagged, reason)`` for a window: flagged when coverage < ``min_coverage`` or the largest
    gap exceeds ``max_gap_s``; the reason is a sentence naming every rule broken."""
    reasons = []
    if coverage < min_coverage:
        reasons.append(f"readings cover {coverage:.1%} of the window (< {min_coverage:.0%})")
    if largest_gap_s > max_gap_s:
        reasons.append(f"a gap of {largest_gap_s:.2f} s between readings (> {max_gap_s:g} s)")
    if not reasons:
        return False, None
    return True, "; ".join(reasons)


def _check(times_ns: Sequence[int], values: Sequence[float], start_ns: int, end_ns: int) -> None:
    if len(times_ns) != len(values):
        raise ValueError(f"{len(times_ns)} times but {len(values)} values")
    if end_ns < start_ns:
        raise ValueError(f"window ends ({end_ns}) before it starts ({start_ns})")


def _largest_gap(times_ns: Sequence[int], lo: int, hi: int, start_ns: int, end_ns: int) -> int:
    """The longest stretch of ``[start_ns, end_ns]`` without a reading; readings ``lo..hi-1`` lie
    strictly inside the window."""
    if hi <= lo:
        return end_ns - start_ns
    gap = max(times_ns[lo] - start_ns, end_ns - times_ns[hi - 1])
    for i in range(lo + 1, hi):
        gap = max(gap, times_ns[i] - times_ns[i - 1])
    return gap


def unwrap_counter(values_j: Sequence[float]) -> tuple[list[float], list[int]]:
    """A monotonic version of a cumulative counter, and the indices where it was reset.

    A reading lower than the one before is a reset: the energy between those two readings is the
    new reading (the counter restarted from 0 in between; what accrued before the restart is lost).
    The result starts at ``values_j[0]``.
    """
    out: list[float] = []
    resets: list[int] = []
    total = 0.0
    for i, v in enumerate(values_j):
        if i == 0:
            total = float(v)
        elif v < values_j[i - 1]:
            resets.append(i)
            total += float(v)
        else:
            total += float(v) - float(values_j[i - 1])
        out.append(total)
    return out, resets


def _interp(times_ns: Sequence[int], values: Sequence[float], t_ns: int, i: int) -> float:
    """``values`` interpolated at ``t_ns``, where ``times_ns[i-1] <= t_ns <= times_ns[i]``."""
    t0, t1 = times_ns[i - 1], times_ns[i]
    if t1 == t0:
        return float(values[i])
    f = (t_ns - t0) / (t1 - t0)
    return float(values[i - 1]) + f * (float(values[i]) - float(values[i - 1]))


def counter_energy(times_ns: Sequence[int], energy_j: Sequence[float], start_ns: int, end_ns: int) -> Integral:
    """Energy over ``[start_ns, end_ns]`` from a cumulative counter (J), interpolated linearly at
    the window's edges. The part of the window outside the readings' span is uncovered (never
    extrapolated); between readings the counter covers the time however far apart they are."""
    _check(times_ns, energy_j, start_ns, end_ns)
    lo = bisect_right(times_ns, start_ns)   # first reading after start
    hi = bisect_left(times_ns, end_ns)      # first reading at or after end
    inside = hi - lo
    gap = _largest_gap(times_ns, lo, hi, start_ns, end_ns)
    n = len(times_ns)
    if n < 2:
        return Integral(start_ns, end_ns, 0.0, 0, gap, n)
    a = max(start_ns, times_ns[0])
    b = min(end_ns, times_ns[-1])
    if b <= a:
        covered = 1 if (start_ns == end_ns and times_ns[0] <= start_ns <= times_ns[-1]) else 0
        return Integral(start_ns, end_ns, 0.0, 0, gap, inside + covered)
    # Unwrap only the readings that matter: the one at or before a through the one at or after b.
    i0 = max(0, bisect_right(times_ns, a) - 1)
    i1 = min(n - 1, bisect_left(times_ns, b))
    ts = times_ns[i0:i1 + 1]
    mono, resets = unwrap_counter(energy_j[i0:i1 + 1])
    ja = _interp(ts, mono, a, max(1, bisect_left(ts, a)))
    jb = _interp(ts, mono, b, max(1, bisect_left(ts, b)))
    # A reset in the segment holding an edge is counted when the edge cuts into that segment.
    resets_in = sum(1 for r in resets if ts[r] > a and ts[r - 1] < b)
    return Integral(start_ns, end_ns, jb - ja, b - a, gap, inside, resets_in)


def sample_energy(times_ns: Sequence[int], power_w: Sequence[float], start_ns: int, end_ns: int,
                  *, max_bridge_ns: int = DEFAULT_MAX_BRIDGE_NS) -> Integral:
    """Energy over ``[start_ns, end_ns]`` from instantaneous power samples (W) by the trapezoid
    rule, clipped exactly at the edges (the power there is interpolated between the neighbouring
    samples). Outside the samples' span nothing is covered. A gap longer than ``max_bridge_ns``
    covers only ``max_bridge_ns`` of it: half after the earlier sample at that sample's power, half
    before the later one at its power."""
    _check(times_ns, power_w, start_ns, end_ns)
    lo = bisect_right(times_ns, start_ns)
    hi = bisect_left(times_ns, end_ns)
    gap = _largest_gap(times_ns, lo, hi, start_ns, end_ns)
    n = len(times_ns)
    energy = 0.0
    covered = 0
    if n >= 2:
        i0 = max(1, bisect_right(times_ns, start_ns))
        i1 = min(n - 1, bisect_left(times_ns, end_ns))
        for i in range(i0, i1 + 1):
            t0, t1 = times_ns[i - 1], times_ns[i]
            a, b = max(t0, start_ns), min(t1, end_ns)
            if b <= a:
                continue
            p0, p1 = float(power_w[i - 1]), float(power_w[i])
            if t1 - t0 <= max_bridge_ns:
                pa = _interp(times_ns, power_w, a, i)
                pb = _interp(times_ns, power_w, b, i)
                energy += 0.5 * (pa + pb) * (b - a) / 1e9
                covered += b - a
            else:
                half = max_bridge_ns // 2
                for seg_a, seg_b, p in ((t0, t0 + half, p0), (t1 - half, t1, p1)):
                    sa, sb = max(seg_a, a), min(seg_b, b)
                    if sb > sa:
                        energy += p * (sb - sa) / 1e9
                        covered += sb - sa
    inside = hi - lo
    return Integral(start_ns, end_ns, energy, covered, gap, inside)


def power_at(times_ns: Sequence[int], power_w: Sequence[float], t_ns: int) -> float | None:
    """The power at ``t_ns``, interpolated between the samples around it, or the nearest sample's
    power outside their span; None without samples."""
    n = len(times_ns)
    if n == 0:
        return None
    i = bisect_left(times_ns, t_ns)
    if i == 0:
        return float(power_w[0])
    if i >= n:
        return float(power_w[-1])
    return _interp(times_ns, power_w, t_ns, i)


def power_x_time(times_ns: Sequence[int], power_w: Sequence[float], start_ns: int, end_ns: int,
                 *, max_distance_ns: int = DEFAULT_MAX_BRIDGE_NS) -> Integral:
    """Energy over a short window as the power at its midpoint × its duration, for windows shorter
    than a counter's update period. Covered when a sample lies within ``max_distance_ns`` of the
    midpoint (or samples bracket it)."""
    _check(times_ns, power_w, start_ns, end_ns)
    mid = (start_ns + end_ns) // 2
    p = power_at(times_ns, power_w, mid)
    lo = bisect_right(times_ns, start_ns)
    hi = bisect_left(times_ns, end_ns)
    gap = _largest_gap(times_ns, lo, hi, start_ns, end_ns)
    if p is None:
        return Integral(start_ns, end_ns, 0.0, 0, gap, 0)
    i = bisect_left(times_ns, mid)
    bracketed = 0 < i < len(times_ns) and times_ns[i] - times_ns[i - 1] <= max_distance_ns
    nearest = min(abs(t - mid) for t in times_ns[max(0, i - 1):i + 1])
    ok = bracketed or nearest <= max_distance_ns
    duration = end_ns - start_ns
    return Integral(start_ns, end_ns, p * duration / 1e9 if ok else 0.0, duration if ok else 0, gap, hi - lo)
