"""Shape of a trajectory set: sessions, turns, input/output length and tool delay distributions, and
the theoretical prefix-cache hit rate.

Input tokens per call are the recorded prompt tokens (``prompt_tokens``, or ``input_tokens`` of a
token-only turn). Where a chat turn records none, they are estimated with a tokenizer as the content
tokens of the system prompt, the tool definitions (as JSON) and every message sent (no chat
template), and the report says how many were estimated.

Theoretical prefix-cache hit rate: the share of input tokens an infinite prefix cache would hold.
Within a session a chat turn's prompt starts with the previous turn's whole prompt (recorded
history), so turn k hits min(input[k-1], input[k]) tokens. Token-only turns hit their leading
blocks whose hash (at that length or longer) an earlier prompt had, up to the first miss; "across
the set" shares one cache between all sessions in file order (Mooncake's ids are global).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from .model import Conversation
from .importers.common import message_text
from .schema import is_token_only, turn_metadata
from .tokens import Tokenizer, load_tokenizer, turn_prompt_blocks

PERCENTILES = (5, 25, 50, 75, 95, 99)


@dataclass
class Distribution:
    count: int
    min: float | None = None
    mean: float | None = None
    max: float | None = None
    percentiles: dict[str, float] = field(default_factory=dict)  # "p50" -> value (numpy linear interpolation)

    @classmethod
    def of(cls, values: Iterable[float]) -> "Distribution":
        a = np.asarray(list(values), dtype=np.float64)
        if a.size == 0:
            return cls(0)
        return cls(int(a.size), float(a.min()), float(a.mean()), float(a.max()),
                   {f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES})

    def p(self, q: int) -> float | None:
        return self.percentiles.get(f"p{q}")


@dataclass
class TrajectoryStats:
    sessions: int
    turns: int
    chat_sessions: int
    token_only_sessions: int
    sources: dict[str, int]
    turns_per_session: Distribution
    input_tokens: Distribution
    input_tokens_estimated: int  # turns whose input tokens were counted by the tokenizer, not recorded
    output_tokens: Distribution
    output_tokens_missing: int  # turns without an output length
    output_tokens_estimated: int  # turns whose output length an importer estimated (turn metadata)
    tool_delay_s: Distribution  # delays between calls (not after a session's last call)
    cache_hit_rate_within_sessions: float | None
    cache_hit_rate_across_set: float | None  # token-only sessions only
    tokenizer: str | None  # the tokenizer used for estimates, if any was needed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Estimator:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.tok: Tokenizer | None = None

    def count(self, text: str) -> int:
        if self.tok is None:
            self.tok = load_tokenizer(self.spec)
        return len(self.tok.encode(text)) if text else 0


def _chat_inputs(conv: Conversation, est: _Estimator) -> tuple[list[int], int]:
    """Input tokens per turn (recorded, else estimated) and how many were estimated."""
    out, estimated = [], 0
    running: int | None = None
    if any(t.prompt_tokens is None for t in conv.turns):
        running = est.count(conv.system or "") + (est.count(json.dumps(conv.tools)) if conv.tools else 0)
    for turn in conv.turns:
        if running is not None:
            running += sum(est.count(message_text(m)) for m in turn.messages or [])
        if turn.prompt_tokens is not None:
            out.append(turn.prompt_tokens)
        else:
            out.append(running or 0)
            estimated += 1
    return out, estimated


def _block_hits(conv: Conversation, k: int, cache: dict[int, int]) -> int:
    hit, missed = 0, False
    for h, n in turn_prompt_blocks(conv, k):
        if not missed and cache.get(h, 0) >= n:
            hit += n
        else:
            missed = True
        if cache.get(h, 0) < n:
            cache[h] = n
    return hit


def compute(conversations: list[Conversation], tokenizer: str = "cl100k_base") -> TrajectoryStats:
    est = _Estimator(tokenizer)
    inputs: list[int] = []
    outputs: list[int] = []
    delays: list[float] = []
    n_est = missing = out_est = 0
    hit_session = hit_set = total = total_tokens_only = 0
    global_cache: dict[int, int] = {}
    chat = token_only = 0
    for conv in conversations:
        if is_token_only(conv):
            token_only += 1
            ins = [t.input_tokens or 0 for t in conv.turns]
            cache: dict[int, int] = {}
            for k in range(len(conv.turns)):
                hit_session += _block_hits(conv, k, cache)
                hit_set += _block_hits(conv, k, global_cache)
            total_tokens_only += sum(ins)
        else:
            chat += 1
            ins, e = _chat_inputs(conv, est)
            n_est += e
            hit_session += sum(min(a, b) for a, b in zip(ins, ins[1:]))
        inputs.extend(ins)
        total += sum(ins)
        for k, t in enumerate(conv.turns):
            if t.output_tokens is None:
                missing += 1
            else:
                outputs.append(t.output_tokens)
                out_est += "output_tokens_estimated" in turn_metadata(conv, k)
        delays.extend(t.tool_delay_s for t in conv.turns[:-1])
    return TrajectoryStats(
        sessions=len(conversations), turns=len(inputs), chat_sessions=chat, token_only_sessions=token_only,
        sources=dict(Counter(str(c.metadata.get("source", "unknown")) for c in conversations)),
        turns_per_session=Distribution.of(len(c.turns) for c in conversations),
        input_tokens=Distribution.of(inputs), input_tokens_estimated=n_est,
        output_tokens=Distribution.of(outputs), output_tokens_missing=missing, output_tokens_estimated=out_est,
        tool_delay_s=Distribution.of(delays),
        cache_hit_rate_within_sessions=hit_session / total if total else None,
        cache_hit_rate_across_set=hit_set / total_tokens_only if total_tokens_only and not chat else None,
        tokenizer=tokenizer if est.tok is not None else None)


def series(conversations: list[Conversation], tokenizer: str = "cl100k_base") -> dict[str, list[float]]:
    """The per-call and per-session values behind :func:`compute`'s distributions (for plots)."""
    est = _Estimator(tokenizer)
    inputs: list[float] = []
    for c in conversations:
        if is_token_only(c):
            inputs.extend(t.input_tokens or 0 for t in c.turns)
        else:
            inputs.extend(_chat_inputs(c, est)[0])
    return {
        "input_tokens": inputs,
        "output_tokens": [t.output_tokens for c in conversations for t in c.turns if t.output_tokens is not None],
        "tool_delay_s": [t.tool_delay_s for c in conversations for t in c.turns[:-1]],
        "turns_per_session": [len(c.turns) for c in conversations],
    }


def _fmt(v: float | None, seconds: bool) -> str:
    if v is None:
        return "-"
    if seconds:
        return f"{v:.2f}"
    return f"{v:,.0f}"


def format_stats(s: TrajectoryStats) -> str:
    """A plain-text report (what ``agentperf-native trajectories inspect`` prints)."""
    kinds = ", ".join(x for x in (f"{s.chat_sessions} chat" if s.chat_sessions else "",
                                  f"{s.token_only_sessions} token-only" if s.token_only_sessions else "") if x)
    lines = [f"sessions: {s.sessions} ({kinds})   turns (model calls): {s.turns}",
             "sources: " + ", ".join(f"{k} ({v})" for k, v in sorted(s.sources.items()))]
    head = f"{'':16}{'count':>8}{'min':>10}{'p5':>10}{'p25':>10}{'p50':>10}{'mean':>10}{'p75':>10}{'p95':>10}{'p99':>10}{'max':>10}"
    lines.append(head)
    for label, d, sec in (("turns/session", s.turns_per_session, False), ("input tokens", s.input_tokens, False),
                          ("output tokens", s.output_tokens, False), ("tool delay s", s.tool_delay_s, True)):
        row = f"{label:16}{d.count:>8}" + "".join(
            f"{_fmt(v, sec):>10}" for v in (d.min, d.p(5), d.p(25), d.p(50), d.mean, d.p(75), d.p(95), d.p(99), d.max))
        lines.append(row)
    if s.input_tokens_estimated:
        lines.append(f"input tokens: {s.input_tokens_estimated} of {s.turns} counted with {s.tokenizer} "
                     "(content only, no chat template); the rest recorded")
    if s.output_tokens_estimated:
        lines.append(f"output tokens: {s.output_tokens_estimated} estimated by the importer from the recorded replies")
    if s.output_tokens_missing:
        lines.append(f"output tokens: {s.output_tokens_missing} turns have none (the engine's default applies)")
    hit = s.cache_hit_rate_within_sessions
    text = "-" if hit is None else f"{hit:.1%} within sessions"
    if s.cache_hit_rate_across_set is not None:
        text += f", {s.cache_hit_rate_across_set:.1%} with one cache shared across the set"
    lines.append(f"theoretical prefix-cache hit rate (infinite cache): {text}")
    return "\n".join(lines)


def compare_to_target(s: TrajectoryStats, target: Any) -> list[tuple[str, float, float, bool]]:
    """(what, measured, target, within tolerance) for the shape a synth config aims at."""
    rows = []
    for what, measured, want, tol in (
            ("mean input tokens", s.input_tokens.mean, target.mean_input_tokens, 0.10),
            ("median output tokens", s.output_tokens.p(50), target.output_median_tokens, 0.10),
            ("p95 output tokens", s.output_tokens.p(95), target.output_p95_tokens, 0.25),
            ("median tool delay s", s.tool_delay_s.p(50), target.tool_delay_median_s, 0.15)):
        ok = measured is not None and abs(measured - want) <= tol * want
        rows.append((what, float(measured or 0.0), float(want), ok))
    rows.append(("min input tokens >=", float(s.input_tokens.min or 0), float(target.min_input_tokens),
                 (s.input_tokens.min or 0) >= target.min_input_tokens))
    rows.append(("max input tokens <=", float(s.input_tokens.max or 0), float(target.max_input_tokens),
                 (s.input_tokens.max or 0) <= target.max_input_tokens))
    rows.append(("max turns <=", float(s.turns_per_session.max or 0), float(target.max_turns),
                 (s.turns_per_session.max or 0) <= target.max_turns))
    rows.append(("tool delay within [min, max] s", float(s.tool_delay_s.min or 0), float(target.tool_delay_min_s),
                 s.tool_delay_s.count == 0 or (target.tool_delay_min_s <= (s.tool_delay_s.min or 0)
                                               and (s.tool_delay_s.max or 0) <= target.tool_delay_max_s)))
    return rows
