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


class WorkloadError(ValueError):
    """A workload file or object is invalid; the message names the file, line and field."""


@dataclass
class Turn:
    """One model call. Chat conversations carry ``messages``; token-only traces carry ``hash_ids``."""

    messages: list[dict[str, Any]] | None = None  # messages appended since the previous call
    output_tokens: int | None = None  # recorded output length
    tool_delay_s: float = 0.0  # delay after this call before the next one is sent
    prompt_tokens: int | None = None  # recorded prompt tokens of this call (usage), if known
    cached_tokens: int | None = None  # recorded cached prompt tokens of this call, if known
    hash_ids: list[int] | None = None  # token-only: block hashes of the whole prompt of this call
    input_tokens: int | None = None  # token-only: prompt length in tokens (last block may be partial)


@dataclass
class Conversation:
    turns: list[Turn]
    system: str | None = None
    id: str = ""
    tools: list[dict[str, Any]] | None = None  # OpenAI tool definitions sent with every call
    metadata: dict[str, Any] = field(default_factory=dict)
    block_size: int | None = None  # token-only traces: tokens per hash block (64, 512, ...)


def _fail(where: str, what: str, todo: str) -> WorkloadError:
    return WorkloadError(f"{where}: {what}; {todo}")


def _turn_from(obj: Any, where: str) -> Turn:
    if not isinstance(obj, dict):
        raise _fail(where, "a turn must be a JSON object", 'write {"messages": [...], "output_tokens": N}')
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _fail(where, "field 'messages' must be a non-empty list", "list the messages appended since the previous call")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _fail(f"{where}, messages[{i}]", "a message must be an object with a string 'role'",
                        'write {"role": "user", "content": "..."}')
    out = obj.get("output_tokens")
    if out is not None and (not isinstance(out, int) or isinstance(out, bool) or out < 1):
        raise _fail(where, f"field 'output_tokens' must be a positive integer, not {out!r}", "fix or remove it")
    delay = obj.get("tool_delay_s", 0.0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
        raise _fail(where, f"field 'tool_delay_s' must be a number >= 0, not {delay!r}", "fix or remove it")
    return Turn(messages=messages, output_tokens=out, tool_delay_s=float(delay))


def conversation_from_dict(obj: Any, where: str = "conversation") -> Conversation:
    if not isinstance(obj, dict):
        raise _fail(where, "a conversation must be a JSON object", 'write {"system": ..., "turns": [...]}')
    turns = obj.get("turns")
    if not isinstance(turns, list) or not turns:
        raise _fail(where, "field 'turns' must be a non-empty list", "add at least one turn")
    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        raise _fail(where, "field 'system' must be a string", "fix or remove it")
    if "tools" in obj:
        raise _fail(where, "tool definitions ('tools') are not replayed by this version",
                    "remove the field (the trajectory schema v1 importer will carry them)")
    return Conversation(
        turns=[_turn_from(t, f"{where}, turns[{i}]") for i, t in enumerate(turns)],
        system=system,
        id=str(obj.get("id", "")),
        metadata=obj.get("metadata") or {},
    )


def load_conversations(path: str | Path) -> list[Conversation]:
    """Reads a JSONL file of conversations. Errors name the file, line and field."""
    path = Path(path)
    if not path.exists():
        raise WorkloadError(f"{path}: no such file; pass --trajectories with an existing .jsonl file")
    conversations = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise WorkloadError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); "
                                    "each line must hold one conversation object") from None
            conversations.append(conversation_from_dict(obj, f"{path}:{lineno}"))
    if not conversations:
        raise WorkloadError(f"{path}: holds no conversations; add one JSON object per line")
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


def _split_for_prefix(message: dict[str, Any]) -> tuple[str, str] | None:
    """Encodes a message as two pieces so that a prefix inserted between them starts its text content."""
    content = message.get("content")
    if not isinstance(content, str):
        return None
    rest = {k: v for k, v in message.items() if k != "content"}
    head = _dump(rest)[:-1]  # without the closing brace
    head += ("," if len(rest) else "") + '"content":"'
    tail = _dump(content)[1:] + "}"
    return head, tail


@dataclass
class EncodedWorkload:
    """A workload encoded for the engine; ``core`` is the frozen native object."""

    core: Any
    conversations: list[Conversation]
    digest: str  # sha256 of the encoded fragments and turn specs: pins the workload in results
    requests_per_pass: int


def encode(conversations: Iterable[Conversation], *, model: str, path: str = "/v1/chat/completions",
           include_usage: bool = True, ignore_eos: bool = False, extra_body: dict[str, Any] | None = None,
           default_max_tokens: int | None = None) -> EncodedWorkload:
    """Encodes conversations once into shared JSON fragments (the native Workload)."""
    conversations = list(conversations)
    if not conversations:
        raise WorkloadError("the workload holds no conversations")
    core = _core.Workload()
    extra = _dump(extra_body)[1:-1] if extra_body else ""
    core.set_request(path=path, model=model, include_usage=include_usage, ignore_eos=ignore_eos, extra_body=extra)
    digest = hashlib.sha256()
    requests = 0
    for conv in conversations:
        messages: list[dict[str, Any]] = [] if conv.system is None else [{"role": "system", "content": conv.system}]
        ends = []  # per turn: number of messages its request carries
        for turn in conv.turns:
            messages.extend(turn.messages)
            ends.append(len(messages))
        split = _split_for_prefix(messages[0])
        fragments = list(split) if split else [_dump(messages[0])]
        fragments.extend("," + _dump(m) for m in messages[1:])
        insert_at = 1 if split else -1
        shift = 1 if split else 0
        turn_specs = []
        for turn, end in zip(conv.turns, ends):
            max_tokens = turn.output_tokens if turn.output_tokens is not None else default_max_tokens
            turn_specs.append((end + shift, -1 if max_tokens is None else int(max_tokens), -1,
                               int(round(turn.tool_delay_s * 1e9))))
        core.add_conversation(fragments, insert_at, turn_specs)
        for f in fragments:
            digest.update(f.encode("utf-8"))
        digest.update(repr(turn_specs).encode())
        requests += len(turn_specs)
    core.finalize()
    return EncodedWorkload(core=core, conversations=conversations, digest=digest.hexdigest(), requests_per_pass=requests)
