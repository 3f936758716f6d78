"""The one place where a window of request records becomes numbers.

Every figure the tool reports about a window — a search probe, a fixed phase (``run
--concurrency``), the live line and ``report`` — comes from :class:`WindowMeter` (or
:func:`measure`, its one-shot form). The rules, written once:

- A window is ``[start_ns, end_ns)`` of the engine's monotonic clock. The requests it judges are
  those *scheduled* inside it (an agent became ready to send: previous turn done + tool delay), so
  time queued inside the client counts.
- Two kinds of figure, both always kept:
  - percentiles over **successful** requests (``ttft_s``, ``output_speed_tps``, ``e2e_s``,
    ``itl_s``), numpy's linear interpolation;
  - **SLO figures** over every request, where a failed or timed-out one is a violation (TTFT
    infinite, output speed 0): ``slo_ttft_p95_s`` and ``slo_output_speed_p25_tps``, order
    statistics (no interpolation toward an infinite violation).
- TTFT = first output token − scheduled; output speed = (output_tokens − 1) / (last − first output
  token); a request with fewer than two tokens (or both in one event) has no speed: it is left out
  of the successful-request speed percentiles and counts as meeting any speed in the SLO view
  (its speed is not measurable, and it was served).
- Throughput: output tokens generated inside the window, each successful request's tokens spread
  evenly between its first and last output token and clipped to the window (requests scheduled
  before the window contribute their part inside it).

The meter is incremental: :meth:`WindowMeter.add` takes each drained batch once (O(batch)) and
keeps only the derived columns of the requests that concern the window (not the records: those
go to disk), so the live line and the window rules never rescan the run. A long window's columns
(beyond :data:`SPILL_ROWS` requests, ~100 bytes each) move to anonymous temporary files as they
grow, so a half-hour phase at thousands of agents keeps the process's memory flat; the exact
figures are computed from every value when the window closes (:meth:`WindowMeter.stats`), and the
live line reads the running counts and the most recent requests (:meth:`WindowMeter.live`).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .engine import ERROR_KINDS, FLAG_TOKENS_ESTIMATED, FLAG_UNDER_GENERATED, FLAG_USER_STAMPS

_HTTP_STATUS = ERROR_KINDS.index("http_status")
TTFT_PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}
SPEED_PERCENTILES = {"p5": 5, "p25": 25, "p50": 50, "p75": 75}
E2E_PERCENTILES = {"p50": 50, "p95": 95, "p99": 99}
ITL_PERCENTILES = {"p50": 50, "p95": 95}
DELAY_PERCENTILES = {"p50": 50, "p99": 99, "max": 100}


@dataclass
class WindowStats:
    """What a window measured (see the module docstring for every definition)."""

    duration_s: float = 0.0
    requests: int = 0                      #: scheduled in the window (finished, failed or cancelled)
    requests_ok: int = 0
    requests_failed: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    error_rate: float = 0.0
    ttft_s: dict[str, float | None] = field(default_factory=dict)
    output_speed_tps: dict[str, float | None] = field(default_factory=dict)
    e2e_s: dict[str, float | None] = field(default_factory=dict)
    itl_s: dict[str, float | None] = field(default_factory=dict)
    slo_ttft_p95_s: float | None = None
    slo_output_speed_p25_tps: float | None = None
    output_tokens: int = 0                 #: of the successful requests scheduled in the window
    prompt_tokens: int = 0
    cached_tokens: int = 0                 #: where the server reported them
    throughput_output_tps: float = 0.0
    trajectories_completed: int = 0        #: last turns completed successfully in the window
    min_trajectories_per_agent: int = 0    #: over the agents seen in the window (0 if fewer than asked)
    requests_under_generated: int = 0
    requests_tokens_estimated: int = 0
    context_overflows: int = 0             #: refused for their length (HTTP 400/413)
    send_lateness_p99_ms: float | None = None  #: scheduled -> first byte written (client queueing)
    #: client-added delay: per request, the most any of its reads waited between the kernel's
    #: receive stamp and the client seeing the bytes (requests with a response, kernel-stamped)
    client_delay_ms: dict[str, float | None] = field(default_factory=dict)
    requests_user_stamps: int = 0          #: with a read that had no kernel stamp (user-space times)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


#: Rows a window column holds in memory before it moves them to its temporary file (~3 MiB for all
#: columns; at 2,000 agents against a fast server a window reaches it in under a minute).
SPILL_ROWS = 1 << 15


class _Column:
    """A growable numpy column (amortised O(1) append; no re-concatenation of the whole window).

    With ``spill_rows``, once that many rows are in memory they are appended to an anonymous
    temporary file (in ``TMPDIR``) and the memory is reused: memory stays bounded however long the
    window; :attr:`values` reads them back (transiently, when the window is judged)."""

    def __init__(self, dtype: type, spill_rows: int | None = None) -> None:
        self._data = np.empty(1024, dtype=dtype)
        self._mem = 0
        self._spill_rows = spill_rows
        self._file = None
        self.spilled = 0  #: rows in the file

    @property
    def size(self) -> int:
        return self.spilled + self._mem

    def extend(self, values: np.ndarray) -> None:
        need = self._mem + len(values)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self._mem] = self._data[: self._mem]
            self._data = grown
        self._data[self._mem: need] = values
        self._mem = need
        if self._spill_rows is not None and self._mem >= self._spill_rows:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="agentperf-window-")
            self._file.write(self._data[: self._mem].tobytes())
            self.spilled += self._mem
            self._mem = 0

    @property
    def recent(self) -> np.ndarray:
        """The rows still in memory (the most recent ones)."""
        return self._data[: self._mem]

    @property
    def values(self) -> np.ndarray:
        if self._file is None:
            return self._data[: self._mem]
        self._file.seek(0)
        spilled = np.fromfile(self._file, dtype=self._data.dtype, count=self.spilled)
        self._file.seek(0, 2)
        return np.concatenate([spilled, self._data[: self._mem]])


def _pct(values: np.ndarray, percentiles: dict[str, float], scale: float = 1.0) -> dict[str, float | None]:
    if values.size == 0:
        return {k: None for k in percentiles}
    got = np.percentile(values, list(percentiles.values()))
    return {k: float(v) * scale for k, v in zip(percentiles, got)}


def _order_stat(values: np.ndarray, p: float) -> float | None:
    return float(np.percentile(values, p, method="inverted_cdf")) if values.size else None


class WindowMeter:
    """Incremental statistics of one window.

    ``start_ns``: the window opens; ``end_ns`` (None while it is open) closes it — set it with
    :meth:`close`. ``turns_per_conversation`` lets it count completed trajectories; ``agents`` is
    the concurrency (for the per-agent trajectory rule). Feed every drained batch to :meth:`add`
    (records of any time: the meter keeps what concerns the window) and read :meth:`stats`.
    """

    _COLUMNS = {"sched": np.int64, "ttft": np.float64, "speed": np.float64, "e2e": np.float64,
                "itl": np.float64, "ok": np.bool_, "late": np.float64, "kind": np.uint8, "out": np.int64,
                "prompt": np.int64, "cached": np.int64, "under": np.bool_, "estimated": np.bool_,
                "overflow": np.bool_, "agent": np.int64, "done": np.bool_, "delay": np.float64,
                "user_stamps": np.bool_}

    def __init__(self, start_ns: int, *, end_ns: int | None = None, turns_per_conversation: list[int] | None = None,
                 agents: int = 0) -> None:
        self.start_ns = int(start_ns)
        self.end_ns = None if end_ns is None else int(end_ns)
        self.agents = agents
        self._last_turn = (np.asarray(turns_per_conversation, dtype=np.int64) - 1
                           if turns_per_conversation else None)
        self._cols = {name: _Column(dt, SPILL_ROWS) for name, dt in self._COLUMNS.items()}
        # Throughput: successful requests whose output overlaps the window (any scheduled time).
        self._tp = {name: _Column(np.float64, SPILL_ROWS) for name in ("first", "last", "tokens")}
        self._failed = 0  # running count, for the live line
        # The window rules' running counts (read every tick while the window is open).
        self._done_per_agent = np.zeros(0, dtype=np.int64)
        self._seen_agent = np.zeros(0, dtype=np.bool_)

    # -- feeding ---------------------------------------------------------------------------------
    def close(self, end_ns: int) -> None:
        """Closes the window at ``end_ns``; requests scheduled at or after it do not count."""
        self.end_ns = int(end_ns)

    def add(self, records: np.ndarray) -> "WindowMeter":
        """Takes a batch of records (any order, any time); O(len(records))."""
        if records.size == 0:
            return self
        ok_all = records["error_kind"] == 0
        tp = records[ok_all & (records["last_token_ns"] > self.start_ns) & (records["first_token_ns"] > 0)]
        if tp.size:
            self._tp["first"].extend(tp["first_token_ns"].astype(np.float64))
            self._tp["last"].extend(tp["last_token_ns"].astype(np.float64))
            self._tp["tokens"].extend(tp["output_tokens"].astype(np.float64))
        sched = records["scheduled_ns"]
        mask = sched >= self.start_ns
        if self.end_ns is not None:
            mask &= sched < self.end_ns
        sel = records[mask]
        if sel.size == 0:
            return self
        ok = sel["error_kind"] == 0
        self._failed += int(len(sel) - np.count_nonzero(ok))
        c = self._cols
        c["sched"].extend(sel["scheduled_ns"])
        c["ok"].extend(ok)
        c["ttft"].extend(np.where(ok, (sel["first_token_ns"] - sel["scheduled_ns"]) * 1e-9, np.inf))
        c["e2e"].extend(np.where(ok, (sel["done_ns"] - sel["scheduled_ns"]) * 1e-9, np.inf))
        span = (sel["last_token_ns"] - sel["first_token_ns"]) * 1e-9
        has_speed = ok & (sel["output_tokens"] > 1) & (span > 0)
        safe_span = np.where(has_speed, span, 1.0)
        # nan: successful without a measurable speed; 0: failed (a violation).
        c["speed"].extend(np.where(has_speed, (sel["output_tokens"] - 1) / safe_span, np.where(ok, np.nan, 0.0)))
        c["itl"].extend(np.where(has_speed, safe_span / np.maximum(sel["output_tokens"] - 1, 1), np.nan))
        sent = sel["sent_ns"]
        c["late"].extend(np.where(sent > 0, (sent - sel["scheduled_ns"]) * 1e-6, np.nan))
        c["kind"].extend(sel["error_kind"])
        user = sel["flags"] & FLAG_USER_STAMPS != 0
        c["user_stamps"].extend(user)
        c["delay"].extend(np.where((sel["first_byte_ns"] > 0) & ~user, sel["client_delay_us"] / 1e3, np.nan))
        c["out"].extend(np.where(ok, sel["output_tokens"], 0))
        c["prompt"].extend(np.where(ok, np.maximum(sel["prompt_tokens"], 0), 0))
        c["cached"].extend(np.where(ok, np.maximum(sel["cached_tokens"], 0), 0))
        c["under"].extend(ok & (sel["flags"] & FLAG_UNDER_GENERATED != 0))
        c["estimated"].extend(ok & (sel["flags"] & FLAG_TOKENS_ESTIMATED != 0))
        c["overflow"].extend((sel["error_kind"] == _HTTP_STATUS) & np.isin(sel["http_status"], (400, 413)))
        agents = sel["agent_id"].astype(np.int64)
        c["agent"].extend(agents)
        done = np.zeros(len(sel), dtype=np.bool_)
        if self._last_turn is not None:
            done = ok & (sel["turn"] == self._last_turn[sel["conversation"]])
        c["done"].extend(done)
        top = int(agents.max()) + 1
        if top > len(self._seen_agent):
            grow = top - len(self._seen_agent)
            self._seen_agent = np.concatenate([self._seen_agent, np.zeros(grow, np.bool_)])
            self._done_per_agent = np.concatenate([self._done_per_agent, np.zeros(grow, np.int64)])
        self._seen_agent[agents] = True
        np.add.at(self._done_per_agent, agents[done], 1)
        return self

    # -- reading ---------------------------------------------------------------------------------
    @property
    def requests(self) -> int:
        """Requests of the window drained so far."""
        return self._cols["sched"].size

    @property
    def trajectories_completed(self) -> int:
        """Running count for the window rules (exact figures: :meth:`stats`)."""
        return int(self._done_per_agent.sum())

    @property
    def min_trajectories_per_agent(self) -> int:
        return _min_per_agent(self._seen_agent, self._done_per_agent, self.agents)

    def live(self) -> dict:
        """What the live line shows, cheaply (no read-back of spilled rows): the window's requests
        and failures so far (exact), and the SLO figures over the requests still in memory — every
        one of the window's until it passes :data:`SPILL_ROWS`, then the most recent
        (``recent_only``). The judged figures are :meth:`stats`'s."""
        ttft, speed = self._cols["ttft"].recent, self._cols["speed"].recent
        slo_speed = np.where(np.isnan(speed), np.inf, speed)
        return {"requests": self.requests, "requests_failed": self._failed,
                "slo_ttft_p95_s": _order_stat(ttft, 95), "slo_output_speed_p25_tps": _order_stat(slo_speed, 25),
                "recent_only": self._cols["sched"].spilled > 0}

    def stats(self, now_ns: int | None = None) -> WindowStats:
        """The window's figures; an open window is read as if it closed at ``now_ns``."""
        end = self.end_ns if self.end_ns is not None else now_ns
        if end is None:
            raise ValueError("an open window needs now_ns")
        keep = self._cols["sched"].values < end
        c = {name: col.values[keep] for name, col in self._cols.items()}
        n = len(c["sched"])
        ok = c["ok"]
        n_ok = int(np.count_nonzero(ok))
        speed = c["speed"]
        measurable = ok & ~np.isnan(speed)
        slo_speed = np.where(np.isnan(speed), np.inf, speed)  # served without a measurable speed: no violation
        kinds = np.bincount(c["kind"], minlength=len(ERROR_KINDS))
        top = int(c["agent"].max()) + 1 if n else 0
        seen = np.zeros(top, np.bool_)
        seen[c["agent"]] = True
        done_per_agent = np.bincount(c["agent"][c["done"]], minlength=top)
        return WindowStats(
            duration_s=max(0, end - self.start_ns) / 1e9,
            requests=n,
            requests_ok=n_ok,
            requests_failed=n - n_ok,
            failures_by_kind={ERROR_KINDS[k]: int(v) for k, v in enumerate(kinds) if k and v},
            error_rate=(n - n_ok) / n if n else 0.0,
            ttft_s=_pct(c["ttft"][ok], TTFT_PERCENTILES),
            output_speed_tps=_pct(speed[measurable], SPEED_PERCENTILES),
            e2e_s=_pct(c["e2e"][ok], E2E_PERCENTILES),
            itl_s=_pct(c["itl"][measurable], ITL_PERCENTILES),
            slo_ttft_p95_s=_order_stat(c["ttft"], 95),
            slo_output_speed_p25_tps=_order_stat(slo_speed, 25),
            output_tokens=int(c["out"].sum()),
            prompt_tokens=int(c["prompt"].sum()),
            cached_tokens=int(c["cached"].sum()),
            throughput_output_tps=self._throughput(end),
            trajectories_completed=int(np.count_nonzero(c["done"])),
            min_trajectories_per_agent=_min_per_agent(seen, done_per_agent, self.agents),
            requests_under_generated=int(np.count_nonzero(c["under"])),
            requests_tokens_estimated=int(np.count_nonzero(c["estimated"])),
            context_overflows=int(np.count_nonzero(c["overflow"])),
            send_lateness_p99_ms=_order_stat(c["late"][~np.isnan(c["late"])], 99),
            client_delay_ms=_pct(c["delay"][~np.isnan(c["delay"])], DELAY_PERCENTILES),
            requests_user_stamps=int(np.count_nonzero(c["user_stamps"])),
        )

    def _throughput(self, end_ns: int) -> float:
        first, last, tokens = (self._tp[k].values for k in ("first", "last", "tokens"))
        if first.size == 0 or end_ns <= self.start_ns:
            return 0.0
        keep = first < end_ns
        first, last, tokens = first[keep], last[keep], tokens[keep]
        span = np.maximum(last - first, 1.0)
        overlap = np.clip(np.minimum(last, end_ns) - np.maximum(first, self.start_ns), 0, None)
        inside = np.where(last > first, overlap / span, ((first >= self.start_ns) & (first < end_ns)).astype(np.float64))
        return float((tokens * inside).sum() / ((end_ns - self.start_ns) / 1e9))


def _min_per_agent(seen: np.ndarray, done_per_agent: np.ndarray, agents: int) -> int:
    ids = np.flatnonzero(seen)
    if len(ids) == 0 or len(ids) < agents:
        return 0
    return int(done_per_agent[ids].min())


def measure(records: np.ndarray, *, window_start_ns: int, window_end_ns: int,
            turns_per_conversation: list[int] | None = None, agents: int = 0) -> WindowStats:
    """One-shot form of :class:`WindowMeter`: the statistics of ``records`` over a closed window."""
    meter = WindowMeter(window_start_ns, end_ns=window_end_ns, turns_per_conversation=turns_per_conversation,
                        agents=agents)
    return meter.add(records).stats()
