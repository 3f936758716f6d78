"""The replayed workload: multi-turn conversations, and their one-time JSON encoding for the engine.

A conversation is a system prompt and a list of turns. A turn holds the messages appended since the
previous model call (turn 0: the first user message; later turns: the recorded assistant reply and
the tool results), the output length to ask for, and the tool delay after the call. Replaying turn k
sends the system prompt and every message of turns 0..k, so the context grows turn by turn.

The file format (JSON Lines, one conversation per line) is::

    {"id": "demo-0001", "system": "You are ...",
     "turns": [{"messages": [{"role": "user", "content": "..."}], "output_tokens": 150, "tool_delay_s": 1.2},
               {"messages": [{"role": "assistant", "content": "..."}, {"role": "user", "content": "..."}],
                "output_tokens": 80, "tool_delay_s": 0.4}]}

Messages are encoded to JSON once per conversation and shared by every agent (see
``cpp/include/agentperf/workload.h``); nothing is re-encoded per agent or per request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import _core
from .trajectories.model import Conversation, Turn, WorkloadError


def load_conversations(path: str | Path) -> list[Conversation]:
    """Reads conversations: a schema v1 JSONL file (``trajectories/SCHEMA.md``) or any format the
    importers know (detected). Errors name the file, line and field, and say what to do."""
    from .trajectories import load

    path = Path(path)
    if not path.exists():
        raise WorkloadError(f"{path}: no such file; pass --trajectories with an existing trajectory file")
    conversations = load(path)
    if not conversations:
        raise WorkloadError(f"{path}: holds no conversations")
    return conversations


def bundled_path(name: str = "default.jsonl") -> Path:
    """Path of a workload bundled with the package (``trajectories/`` of the source tree)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "trajectories" / name, here.parents[1] / "trajectories" / name):
        if candidate.exists():
            return candidate
    raise WorkloadError(f"bundled workload {name!r} is missing from the installation; reinstall agentperf-native")


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _split_content(message: dict[str, Any]) -> tuple[str, str, str] | None:
    """Encodes a message with string content as (head, escaped content, tail), content last.

    The isolation prefix goes between head and content; with history=generated an assistant
    message's content piece is replaced by the reply the agent received."""
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return None
    rest = {k: v for k, v in message.items() if k != "content"}
    head = _dump(rest)[:-1] + ("," if rest else "") + '"content":"'
    return head, _dump(content or "")[1:-1], '"}'


@dataclass
class RequestPolicy:
    """How recorded turns become requests (``run`` options)."""

    history: str = "recorded"  # "recorded" or "generated" (feed back what the server streamed)
    output: str = "recorded"  # "exact" (max=min=recorded + ignore_eos), "recorded" (cap only), "fixed:N"
    tool_delay: str = "recorded"  # "recorded", "none", "fixed:S", "uniform:LO,HI", "lognormal:MEDIAN,SIGMA"
    tool_delay_cap_s: float | None = None
    share_system_prompt: bool = False  # isolation prefix after the system prompt, not inside it
    default_max_tokens: int | None = None  # for turns with no recorded output length
    # how an exact length is forced (dialects.EXACT_METHODS): the server's dialect decides
    exact_method: str = "ignore_eos+min_tokens"
    seed: int = 1  # (the engine's --seed seeds every agent's draws)

    def __post_init__(self) -> None:
        if self.history not in ("recorded", "generated"):
            raise ValueError(f"history must be 'recorded' or 'generated', not {self.history!r}")
        self.fixed_output = None
        if self.output.startswith("fixed:"):
            try:
                self.fixed_output = int(self.output[6:])
            except ValueError:
                self.fixed_output = 0
            if self.fixed_output < 1:
                raise ValueError(f"output policy {self.output!r}: write fixed:N with N >= 1")
        elif self.output not in ("exact", "recorded"):
            raise ValueError(f"output policy must be 'exact', 'recorded' or 'fixed:N', not {self.output!r}")
        self.delay_policy = tool_delay_policy(self.tool_delay)
        from .dialects import EXACT_METHODS

        if self.exact_method not in EXACT_METHODS:
            raise ValueError(f"exact_method must be one of {', '.join(EXACT_METHODS)}, not {self.exact_method!r}")

    @property
    def exact(self) -> bool:
        return self.output == "exact" or self.fixed_output is not None

    def lengths(self, recorded: int | None) -> tuple[int, int]:
        """(max_tokens, min_tokens) for a turn, -1 meaning omitted."""
        n = self.fixed_output if self.fixed_output is not None else (
            recorded if recorded is not None else self.default_max_tokens)
        if n is None:
            return -1, -1
        n = max(1, n)  # a recorded 0 (a call that produced nothing) still asks for one token
        return n, (n if self.exact and self.exact_method == "ignore_eos+min_tokens" else -1)

    @property
    def ignore_eos(self) -> bool:
        return self.exact and self.exact_method in ("ignore_eos+min_tokens", "ignore_eos")

    def turn_head(self, max_tokens: int, open_: str) -> str | None:
        """Top-level members that differ per turn and that the engine has no slot for (transformers
        serve's ``generation_config``, a JSON string): a fragment ahead of the turn's messages."""
        if not self.exact or self.exact_method != "generation_config" or max_tokens < 1:
            return None
        return _dump({"generation_config": _dump({"min_new_tokens": max_tokens})})[1:-1] + "," + open_

    def delay_ns(self, recorded_s: float) -> int:
        """The recorded delay as the engine stores it (the policy is applied by each agent)."""
        return int(round(max(0.0, recorded_s) * 1e9))


def tool_delay_policy(spec: str) -> tuple[str, float, float]:
    """``--tool-delay`` as the engine's policy ``(kind, a_s, b_s)``: every agent draws its delays
    from its own seeded random stream when a turn completes (reproducible from ``--seed``)."""
    kind, _, args = spec.partition(":")
    try:
        values = [float(x) for x in args.split(",")] if args else []
    except ValueError:
        values = None
    if kind in ("recorded", "none") and not args:
        return kind, 0.0, 0.0
    if kind == "fixed" and values and len(values) == 1 and values[0] >= 0:
        return kind, values[0], 0.0
    if kind == "uniform" and values and len(values) == 2 and 0 <= values[0] <= values[1]:
        return kind, values[0], values[1]
    if kind == "lognormal" and values and len(values) == 2 and values[0] > 0 and values[1] >= 0:
        return kind, values[0], values[1]
    raise ValueError(f"tool delay {spec!r}: write recorded, none, fixed:S, uniform:LO,HI or lognormal:MEDIAN,SIGMA "
                     "(seconds)")


@dataclass
class EncodedWorkload:
    """A workload encoded for the engine; ``core`` is the frozen native object."""

    core: Any
    conversations: list[Conversation]
    digest: str  # sha256 of the encoded fragments and turn specs: pins the workload in results
    requests_per_pass: int
    policy: "RequestPolicy"
    request_path: str = "/v1/chat/completions"  # where every request goes (from the server's root)


class _Builder:
    """Fragments and pieces of one conversation, deduplicating identical fragments."""

    def __init__(self) -> None:
        self.fragments: list[str] = []
        self.reply_of: list[int] = []
        self.index: dict[tuple[str, int], int] = {}
        self.pieces: list[int] = []

    def add(self, text: str, reply_of: int = -1) -> int:
        key = (text, reply_of)
        f = self.index.get(key)
        if f is None:
            f = self.index[key] = len(self.fragments)
            self.fragments.append(text)
            self.reply_of.append(reply_of)
        return f


def _encode_chat(conv: Conversation, policy: RequestPolicy, b: _Builder, open_: str = "") -> list[tuple]:
    """Append-only chat history: turn k's pieces are every message up to turn k."""
    messages: list[tuple[dict[str, Any], int]] = []  # (message, turn whose reply it is or -1)
    if conv.system is not None:
        messages.append(({"role": "system", "content": conv.system}, -1))
    ends = []
    for k, turn in enumerate(conv.turns):
        if not turn.messages:
            raise WorkloadError(f"conversation {conv.id or '?'} turn {k}: no messages (a chat turn needs them)")
        for j, m in enumerate(turn.messages):
            is_reply = k > 0 and j == 0 and m.get("role") == "assistant"
            messages.append((m, k - 1 if is_reply else -1))
        ends.append(len(messages))
    # Where the isolation prefix goes: the first message, or the first non-system one when the
    # system prompt is shared across agents.
    target = 0
    if policy.share_system_prompt:
        target = next((i for i, (m, _) in enumerate(messages) if m.get("role") != "system"), len(messages))
    sequence: list[int] = []  # fragment ids of all messages in order
    insert_piece = -1
    for i, (m, reply) in enumerate(messages):
        sep = "," if i else ""
        split = _split_content(m)
        if split is None:
            sequence.append(b.add(sep + _dump(m)))
            continue
        head, content, tail = split
        sequence.append(b.add(sep + head))
        if i == target:
            insert_piece = len(sequence)
        sequence.append(b.add(content, reply))
        sequence.append(b.add(tail))
    message_end_piece = []
    n = 0
    for i, (m, _) in enumerate(messages):
        n += 1 if _split_content(m) is None else 3
        message_end_piece.append(n)
    specs = []
    for turn, end in zip(conv.turns, ends):
        count = message_end_piece[end - 1]
        begin = len(b.pieces)
        max_t, min_t = policy.lengths(turn.output_tokens)
        insert = insert_piece if 0 <= insert_piece < count else -1
        head = policy.turn_head(max_t, open_)
        if head is not None:
            b.pieces.append(b.add(head))
            insert = insert + 1 if insert >= 0 else -1
        b.pieces.extend(sequence[:count])
        specs.append((begin, len(b.pieces), insert, max_t, min_t, policy.delay_ns(turn.tool_delay_s)))
    return specs


def _encode_tokens(conv: Conversation, policy: RequestPolicy, b: _Builder, tokenizer: Any, as_text: bool,
                   open_: str = "") -> list[tuple]:
    """Token-only traces: a prompt made of deterministic token blocks (same hash → same tokens)."""
    from .trajectories.tokens import block_token_ids, turn_prompt_blocks

    specs = []
    for k, turn in enumerate(conv.turns):
        blocks = turn_prompt_blocks(conv, k)
        begin = len(b.pieces)
        max_t, min_t = policy.lengths(turn.output_tokens)
        head = policy.turn_head(max_t, open_)
        if head is not None:
            b.pieces.append(b.add(head))
        if as_text:
            b.pieces.append(b.add('{"role":"user","content":"'))
            for hash_id, n in blocks:
                b.pieces.append(b.add(_dump(tokenizer.decode(block_token_ids(hash_id, n, tokenizer)))[1:-1]))
            b.pieces.append(b.add('"}'))
            insert = 1
        else:
            for i, (hash_id, n) in enumerate(blocks):
                ids = ",".join(map(str, block_token_ids(hash_id, n, tokenizer)))
                b.pieces.append(b.add(ids + ("," if i + 1 < len(blocks) else "")))
            insert = 0
        if head is not None:
            insert += 1
        specs.append((begin, len(b.pieces), insert, max_t, min_t, policy.delay_ns(turn.tool_delay_s)))
    return specs


def encode(conversations: Iterable[Conversation], *, model: str, path: str | None = None,
           include_usage: bool = True, policy: RequestPolicy | None = None,
           extra_body: dict[str, Any] | None = None, tokenizer: Any = None, token_prompts: str = "token_ids",
           base_path: str = "/v1") -> EncodedWorkload:
    """Encodes conversations once into shared JSON fragments (the native Workload).

    Chat conversations go to ``{base_path}/chat/completions``. Token-only traces (turns with
    ``hash_ids``) need a ``tokenizer`` and go either as token-id prompts to
    ``{base_path}/completions`` (``token_prompts="token_ids"``) or as text through the tokenizer to
    the chat endpoint (``token_prompts="text"``).
    """
    conversations = list(conversations)
    if not conversations:
        raise WorkloadError("the workload holds no conversations")
    policy = policy or RequestPolicy()
    token_only = [c for c in conversations if c.turns and c.turns[0].hash_ids is not None]
    if token_only and len(token_only) != len(conversations):
        raise WorkloadError("a workload mixes chat conversations and token-only traces; replay them separately")
    as_ids = bool(token_only) and token_prompts == "token_ids"
    if token_only:
        if token_prompts not in ("token_ids", "text"):
            raise WorkloadError(f"token_prompts must be 'token_ids' or 'text', not {token_prompts!r}")
        if tokenizer is None:
            raise WorkloadError("token-only traces need a tokenizer (e.g. --tokenizer cl100k_base) to build prompts")
    if path is None:
        path = base_path + ("/completions" if as_ids else "/chat/completions")
    if policy.exact and policy.exact_method == "none":
        raise WorkloadError(f"output policy {policy.output!r} needs an exact output length, and the server has no way "
                            "to force one; use --output-length recorded")
    core = _core.Workload()
    extra = "".join("," + _dump({k: v})[1:-1] for k, v in (extra_body or {}).items())
    open_ = '"prompt":[' if as_ids else '"messages":['
    per_turn_head = policy.turn_head(1, open_) is not None
    core.set_request(
        path=path, model=model, include_usage=include_usage, ignore_eos=policy.ignore_eos, extra_body=extra,
        open="" if per_turn_head else open_, close="]",
        isolation_style="token_ids" if as_ids else "text",
        isolation_token_hi=min(30000, getattr(tokenizer, "vocab_size", 30000)) if as_ids else 30000,
    )
    kind, a_s, b_s = policy.delay_policy
    core.set_tool_delay(kind, a_s, b_s, -1.0 if policy.tool_delay_cap_s is None else policy.tool_delay_cap_s)
    digest = hashlib.sha256()
    digest.update(repr((path, policy.history, policy.output, policy.tool_delay, policy.tool_delay_cap_s,
                        policy.share_system_prompt, token_prompts if token_only else None)).encode())
    if policy.exact and policy.exact_method != "ignore_eos+min_tokens" or not include_usage:
        digest.update(repr((policy.exact_method, include_usage)).encode())  # older digests stay as they were
    requests = 0
    for conv in conversations:
        b = _Builder()
        if token_only:
            specs = _encode_tokens(conv, policy, b, tokenizer, as_text=not as_ids,
                                   open_=open_ if per_turn_head else "")
        else:
            specs = _encode_chat(conv, policy, b, open_=open_ if per_turn_head else "")
        members = "," + _dump({"tools": conv.tools})[1:-1] if conv.tools else ""
        reply_of = b.reply_of if any(r >= 0 for r in b.reply_of) else []
        core.add_conversation(b.fragments, b.pieces, specs, reply_of, members)
        for f in b.fragments:
            digest.update(f.encode("utf-8"))
        digest.update(repr((b.pieces, specs, members)).encode())
        requests += len(specs)
    core.finalize()
    return EncodedWorkload(core=core, conversations=conversations, digest=digest.hexdigest(),
                           requests_per_pass=requests, policy=policy, request_path=path)
