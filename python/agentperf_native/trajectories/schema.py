"""Trajectory schema v1 (``agentperf.trajectory.v1``): one trajectory per JSON line.

This module turns one parsed line into a :class:`~agentperf_native.workload.Conversation` (checking
every field, errors naming the file, line and field and what to do) and back. ``trajectories/SCHEMA.md``
is the reference for the format; the two must agree.

Per-turn ``metadata`` has no field on :class:`~agentperf_native.workload.Turn`; it travels in
``Conversation.metadata["turn_metadata"]``, a list aligned with the turns (``None`` where a turn has
none).
"""

from __future__ import annotations

import math
from typing import Any

from .model import Conversation, Turn, WorkloadError

SCHEMA_ID = "agentperf.trajectory.v1"
TURN_METADATA_KEY = "turn_metadata"

_TOP_FIELDS = {"schema", "id", "system", "tools", "block_size", "turns", "metadata"}
_TURN_FIELDS = {"messages", "output_tokens", "tool_delay_s", "prompt_tokens", "cached_tokens", "hash_ids",
                "input_tokens", "metadata"}


class TrajectoryError(WorkloadError):
    """A trajectory file or object is invalid; the message names the file, line and field and what to do."""


def _fail(where: str, what: str, todo: str) -> TrajectoryError:
    return TrajectoryError(f"{where}: {what}; {todo}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(obj: dict[str, Any], key: str, where: str, minimum: int) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if not _is_int(v) or v < minimum:
        raise _fail(where, f"field '{key}' must be an integer >= {minimum}, not {v!r}", "fix it or remove the field")
    return v


def _check_messages(messages: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _fail(where, "field 'messages' must be a non-empty list",
                    "list the messages appended since the previous call (turn 0: the first user message)")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _fail(f"{where}, messages[{i}]", "a message must be an object with a string 'role'",
                        'write {"role": "user", "content": "..."}')
    return messages


def check_tools(tools: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _fail(where, "field 'tools' must be a list of OpenAI tool definitions",
                    'write [{"type": "function", "function": {"name": ..., "parameters": {...}}}] or remove it')
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
                or not isinstance(fn.get("name"), str):
            raise _fail(f"{where}, tools[{i}]", "a tool definition must be {\"type\": \"function\", "
                        "\"function\": {\"name\": ...}}", "fix the definition or remove it")
    return tools


def turn_from_dict(obj: Any, where: str, block_size: int | None) -> tuple[Turn, dict[str, Any] | None]:
    """One turn object -> (Turn, its metadata or None)."""
    if not isinstance(obj, dict):
        raise _fail(where, "a turn must be a JSON object",
                    'write {"messages": [...], "output_tokens": N} or {"hash_ids": [...], "input_tokens": N}')
    unknown = sorted(set(obj) - _TURN_FIELDS)
    if unknown:
        raise _fail(where, f"unknown field '{unknown[0]}'",
                    f"the turn fields of {SCHEMA_ID} are {', '.join(sorted(_TURN_FIELDS))}; "
                    "move anything else into the turn's 'metadata'")
    has_messages = obj.get("messages") is not None
    has_hashes = obj.get("hash_ids") is not None
    if has_messages == has_hashes:
        raise _fail(where, "a turn needs exactly one of 'messages' (chat) or 'hash_ids' (token-only trace)",
                    "keep one of them")
    turn = Turn(output_tokens=_count(obj, "output_tokens", where, 0),
                prompt_tokens=_count(obj, "prompt_tokens", where, 0),
                cached_tokens=_count(obj, "cached_tokens", where, 0))
    delay = obj.get("tool_delay_s", 0.0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not math.isfinite(delay) or delay < 0:
        raise _fail(where, f"field 'tool_delay_s' must be a number of seconds >= 0, not {delay!r}",
                    "fix it or remove the field (0 is the default)")
    turn.tool_delay_s = float(delay)
    if turn.cached_tokens is not None and turn.prompt_tokens is not None and turn.cached_tokens > turn.prompt_tokens:
        raise _fail(where, f"field 'cached_tokens' ({turn.cached_tokens}) exceeds 'prompt_tokens' ({turn.prompt_tokens})",
                    "fix one of them")
    if has_messages:
        turn.messages = _check_messages(obj["messages"], where)
        if "input_tokens" in obj:
            raise _fail(where, "field 'input_tokens' belongs to token-only turns",
                        "use 'prompt_tokens' for the recorded prompt length of a chat turn")
    else:
        ids = obj["hash_ids"]
        if not isinstance(ids, list) or not all(_is_int(h) and h >= 0 for h in ids):
            raise _fail(where, "field 'hash_ids' must be a list of integers >= 0",
                        "list the block hashes of the call's whole prompt")
        if block_size is None:
            raise _fail(where, "a token-only turn ('hash_ids') needs the trajectory's 'block_size'",
                        "add \"block_size\": N (tokens per hash block) to the trajectory")
        n = _count(obj, "input_tokens", where, 1)
        if n is None:
            if not ids:
                raise _fail(where, "a token-only turn needs 'input_tokens' or at least one hash id",
                            "add \"input_tokens\": N")
            n = len(ids) * block_size
        if len(ids) not in (n // block_size, -(-n // block_size)):
            raise _fail(where, f"{len(ids)} hash_ids do not cover input_tokens={n} in blocks of {block_size} "
                        f"(expected {n // block_size} or {-(-n // block_size)})", "fix 'input_tokens' or 'hash_ids'")
        turn.hash_ids = ids
        turn.input_tokens = n
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise _fail(where, "field 'metadata' must be an object", "fix it or remove the field")
    return turn, meta


def conversation_from_dict(obj: Any, where: str) -> Conversation:
    """One parsed trajectory line -> Conversation. ``where`` prefixes errors (``file:line``)."""
    if not isinstance(obj, dict):
        raise _fail(where, "a trajectory must be a JSON object", 'write {"id": ..., "system": ..., "turns": [...]}')
    schema = obj.get("schema", SCHEMA_ID)
    if schema != SCHEMA_ID:
        raise _fail(where, f"field 'schema' is {schema!r}, and this version reads {SCHEMA_ID!r}",
                    "convert the file with `agentperf-native trajectories convert`, or fix the field")
    unknown = sorted(set(obj) - _TOP_FIELDS)
    if unknown:
        raise _fail(where, f"unknown field '{unknown[0]}'",
                    f"the fields of {SCHEMA_ID} are {', '.join(sorted(_TOP_FIELDS))}; move anything else into 'metadata'")
    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        raise _fail(where, "field 'system' must be a string", "fix it or remove the field")
    tools = check_tools(obj["tools"], where) if obj.get("tools") is not None else None
    block_size = _count(obj, "block_size", where, 1)
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _fail(where, "field 'metadata' must be an object", "fix it or remove the field")
    turns_in = obj.get("turns")
    if not isinstance(turns_in, list) or not turns_in:
        raise _fail(where, "field 'turns' must be a non-empty list", "add at least one turn")
    turns, turn_meta = [], []
    for i, t in enumerate(turns_in):
        turn, meta = turn_from_dict(t, f"{where}, turns[{i}]", block_size)
        turns.append(turn)
        turn_meta.append(meta)
    kinds = {t.messages is None for t in turns}
    if len(kinds) > 1:
        raise _fail(where, "the turns mix chat ('messages') and token-only ('hash_ids') turns",
                    "split the trajectory in two")
    metadata = dict(metadata)
    if any(m is not None for m in turn_meta):
        metadata[TURN_METADATA_KEY] = turn_meta
    ident = obj.get("id", "")
    if not isinstance(ident, (str, int)) or isinstance(ident, bool):
        raise _fail(where, "field 'id' must be a string", "fix it or remove the field")
    return Conversation(turns=turns, system=system, id=str(ident), tools=tools, metadata=metadata,
                        block_size=block_size)


def turn_to_dict(turn: Turn, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if turn.messages is not None:
        d["messages"] = turn.messages
    if turn.hash_ids is not None:
        d["hash_ids"] = turn.hash_ids
        d["input_tokens"] = turn.input_tokens
    if turn.output_tokens is not None:
        d["output_tokens"] = turn.output_tokens
    d["tool_delay_s"] = round(float(turn.tool_delay_s), 6)
    if turn.prompt_tokens is not None:
        d["prompt_tokens"] = turn.prompt_tokens
    if turn.cached_tokens is not None:
        d["cached_tokens"] = turn.cached_tokens
    if meta:
        d["metadata"] = meta
    return d


def conversation_to_dict(conv: Conversation) -> dict[str, Any]:
    """Conversation -> one schema v1 object (per-turn metadata moved back into the turns)."""
    metadata = dict(conv.metadata)
    turn_meta = metadata.pop(TURN_METADATA_KEY, None) or [None] * len(conv.turns)
    if len(turn_meta) != len(conv.turns):
        raise TrajectoryError(f"conversation {conv.id!r}: metadata['{TURN_METADATA_KEY}'] has {len(turn_meta)} "
                              f"entries for {len(conv.turns)} turns; keep one entry (or null) per turn")
    d: dict[str, Any] = {"schema": SCHEMA_ID, "id": conv.id}
    if conv.system is not None:
        d["system"] = conv.system
    if conv.tools is not None:
        d["tools"] = conv.tools
    if conv.block_size is not None:
        d["block_size"] = conv.block_size
    d["turns"] = [turn_to_dict(t, m) for t, m in zip(conv.turns, turn_meta)]
    if metadata:
        d["metadata"] = metadata
    return d


def turn_metadata(conv: Conversation, k: int) -> dict[str, Any]:
    """The metadata of turn ``k`` (an empty dict when it has none)."""
    tm = conv.metadata.get(TURN_METADATA_KEY)
    return (tm[k] or {}) if tm else {}


def is_token_only(conv: Conversation) -> bool:
    return bool(conv.turns) and conv.turns[0].hash_ids is not None
