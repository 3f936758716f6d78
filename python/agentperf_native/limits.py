"""The server's context limit, known before measuring.

A workload whose contexts exceed what the server accepts fails those requests (HTTP 400 from vLLM,
an error event from llama.cpp) — every one of them, all run long. So before the first probe the tool
reads the limit (vLLM and SGLang list ``max_model_len`` in ``/v1/models``; llama.cpp's ``/props``
gives the context of a slot), counts each conversation's largest request (prompt + the output it
asks for) with the server's own tokenizer where it has an endpoint for it (vLLM/SGLang
``/tokenize``, llama.cpp ``/apply-template`` + ``/tokenize``; otherwise the tool's estimate, said so),
and says how many conversations would overflow. ``--context-overflow`` decides: ``skip`` them (the
default), ``truncate`` them to their turns that fit, or ``refuse`` to run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .endpoint import Endpoint, Transport, fetch
from .trajectories.model import Conversation

ACTIONS = ("skip", "truncate", "refuse")
#: tokens kept free for the cache-isolation prefix and chat-template differences
MARGIN_TOKENS = 16


@dataclass
class ContextPlan:
    limit: int | None
    limit_source: str  # "/v1/models max_model_len", "/props n_ctx", or "unknown"
    counted_by: str = ""  # "server /tokenize", "server /apply-template + /tokenize", "estimate (...)"
    action: str = "skip"
    conversations: int = 0
    overflowing: list[dict] = field(default_factory=list)  # {id, index, turns, first_overflow_turn, tokens}
    kept_conversations: int = 0
    dropped_turns: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def message(self) -> str | None:
        if not self.overflowing:
            return None
        n, total = len(self.overflowing), self.conversations
        worst = max(o["tokens"] for o in self.overflowing)
        what = {"skip": "skipped: the run measures the conversations that fit",
                "truncate": f"truncated to the turns that fit ({self.dropped_turns} turns dropped)",
                "refuse": "refused (--context-overflow refuse)"}[self.action]
        return (f"{n} of {total} conversations need more context than the server's limit of {self.limit} tokens "
                f"({self.limit_source}; largest request {worst} tokens, counted by {self.counted_by}): {what}")


def read_limit(endpoint: Endpoint, transport: Transport, model: str, listing: list[dict]) -> tuple[int | None, str]:
    for entry in listing:
        if entry.get("id") == model and isinstance(entry.get("max_model_len"), int):
            return entry["max_model_len"], "/v1/models max_model_len"
    resp = fetch(endpoint, transport, "GET", "/props", root=True)
    if not resp.error_kind and resp.status == 200:
        try:
            props = json.loads(resp.body)
            n_ctx = props["default_generation_settings"]["n_ctx"]
            if isinstance(n_ctx, int) and n_ctx > 0:
                return n_ctx, "/props n_ctx (per slot)"
        except (ValueError, KeyError, TypeError):
            pass
    return None, "unknown"


def _messages(conv: Conversation, k: int) -> list[dict]:
    msgs: list[dict] = [{"role": "system", "content": conv.system}] if conv.system is not None else []
    for turn in conv.turns[: k + 1]:
        msgs.extend(turn.messages or [])
    return msgs


def _post(endpoint: Endpoint, transport: Transport, path: str, body: dict) -> Any:
    resp = fetch(endpoint, transport, "POST", path, json.dumps(body).encode(), root=True)
    if resp.error_kind or resp.status != 200:
        return None
    try:
        return json.loads(resp.body)
    except ValueError:
        return None


def server_counter(endpoint: Endpoint, transport: Transport, model: str) -> tuple[Callable | None, str]:
    """A function (conversation, turn) -> prompt tokens using the server's tokenizer, or None."""
    probe = [{"role": "user", "content": "hello"}]
    got = _post(endpoint, transport, "/tokenize", {"model": model, "messages": probe})
    if isinstance(got, dict) and isinstance(got.get("count"), int):
        def count(conv: Conversation, k: int) -> int | None:
            body: dict[str, Any] = {"model": model, "messages": _messages(conv, k)}
            if conv.tools:
                body["tools"] = conv.tools
            r = _post(endpoint, transport, "/tokenize", body)
            return r.get("count") if isinstance(r, dict) else None
        return count, "server /tokenize"
    tpl = _post(endpoint, transport, "/apply-template", {"messages": probe})
    if isinstance(tpl, dict) and isinstance(tpl.get("prompt"), str):
        def count(conv: Conversation, k: int) -> int | None:
            t = _post(endpoint, transport, "/apply-template", {"messages": _messages(conv, k)})
            if not isinstance(t, dict) or not isinstance(t.get("prompt"), str):
                return None
            r = _post(endpoint, transport, "/tokenize", {"content": t["prompt"], "add_special": True})
            return len(r["tokens"]) if isinstance(r, dict) and isinstance(r.get("tokens"), list) else None
        return count, "server /apply-template + /tokenize"
    return None, ""


def estimate_counter(tokenizer: str = "cl100k_base") -> tuple[Callable, str]:
    """The tool's own estimate: token-only traces' input_tokens, else the text through ``tokenizer``."""
    from .trajectories import load_tokenizer

    tok = load_tokenizer(tokenizer)

    def count(conv: Conversation, k: int) -> int:
        turn = conv.turns[k]
        if turn.input_tokens is not None:
            return turn.input_tokens
        text = json.dumps(_messages(conv, k), ensure_ascii=False)
        return len(tok.encode(text))
    return count, f"estimate ({tokenizer}; the server has no tokenize endpoint)"


def plan(conversations: list[Conversation], limit: int | None, source: str, count: Callable, counted_by: str,
         max_tokens_of: Callable[[Conversation, int], int], action: str = "skip") -> ContextPlan:
    """Which conversations overflow ``limit`` and from which turn (contexts only grow, so the last
    turn is counted first and the first overflowing turn found by bisection)."""
    if action not in ACTIONS:
        raise ValueError(f"context overflow action must be one of {', '.join(ACTIONS)}, not {action!r}")
    p = ContextPlan(limit, source, counted_by, action, len(conversations), kept_conversations=len(conversations))
    if limit is None:
        return p

    def need(conv: Conversation, k: int) -> int | None:
        n = count(conv, k)
        return None if n is None else n + max(0, max_tokens_of(conv, k)) + MARGIN_TOKENS

    for i, conv in enumerate(conversations):
        last = len(conv.turns) - 1
        if last < 0:
            continue
        top = need(conv, last)
        if top is None or top <= limit:
            continue
        lo, hi = -1, last  # turn lo fits (-1: none known), turn hi overflows
        while hi - lo > 1:
            mid = (lo + hi) // 2
            n = need(conv, mid)
            if n is not None and n <= limit:
                lo = mid
            else:
                hi = mid
        p.overflowing.append({"id": conv.id, "index": i, "turns": len(conv.turns), "first_overflow_turn": hi,
                              "tokens": top})
    return p


def apply(conversations: list[Conversation], p: ContextPlan) -> list[Conversation]:
    """The conversations to run under the plan's action (``refuse`` is the caller's to raise)."""
    if not p.overflowing:
        return conversations
    bad = {o["index"]: o["first_overflow_turn"] for o in p.overflowing}
    out = []
    for i, conv in enumerate(conversations):
        if i not in bad:
            out.append(conv)
        elif p.action == "truncate" and bad[i] > 0:
            from dataclasses import replace

            p.dropped_turns += len(conv.turns) - bad[i]
            out.append(replace(conv, turns=conv.turns[: bad[i]]))
        elif p.action == "truncate":
            p.dropped_turns += len(conv.turns)
    p.kept_conversations = len(out)
    return out
