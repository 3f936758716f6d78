"""kv-cache-tester / WEKA trace JSON (one Claude Code session per file, no text).

Source: ``id``, ``models``, ``block_size`` (64), ``hash_id_scope``, ``tool_tokens``,
``system_tokens``, ``totals`` and ``requests``; a request has ``t`` (s from the session start),
``type`` (``s``/``n`` streaming or not), ``model``, ``in``, ``out``, ``hash_ids`` (one per *full*
64-token block of the prompt), ``input_types``, ``output_types``, ``stop`` and, in newer traces,
``api_time``, ``think_time``, ``ttft``. A request of ``type`` ``subagent`` is a sub-agent spawned at
``t`` with its own nested ``requests`` (``agent_id``, ``subagent_type``, ``status``, ...).

- Each request -> one token-only turn: ``hash_ids`` (see below), ``input_tokens`` = ``in``,
  ``output_tokens`` = ``out``; every other request field -> turn metadata.
- tool delay after call k = ``think_time`` of call k+1 (the client's time between the reply and the
  next request); where absent: ``t[k+1] - t[k] - api_time[k]``; where that is absent too:
  ``t[k+1] - t[k]`` (turn metadata ``delay_source`` says which).
- Each sub-agent -> its own trajectory ``<id>:<agent_id>`` with ``metadata.parent_id``,
  ``spawned_after_turn`` (the parent turn before it; -1: before the first) and ``start_offset_s``.
- ``hash_id_scope`` ``local`` numbers blocks per file, so equal ids in two files are not the same
  content: ids are moved into a per-file namespace, ``(ns << 32) | recorded_id`` with ``ns`` a 31-bit
  hash of the top-level ``id`` (``metadata.hash_namespace``); ``recorded_id = hash_id & 0xFFFFFFFF``.
  A ``global`` scope keeps the recorded ids.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..model import Conversation, Turn
from .common import ImportOptions, ImportResult, SourceError, as_int, dig, read_json

FORMAT = "kv-cache-tester"
_TURN_KEYS = ("t", "type", "model", "api_time", "think_time", "ttft", "input_types", "output_types", "stop")


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("requests"), list) and \
        ("block_size" in obj or "hash_id_scope" in obj or
         any(isinstance(r, dict) and "hash_ids" in r for r in obj["requests"][:3]))


def hash_namespace(trace_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=4).digest(), "big") & 0x7FFFFFFF


def convert(path: Path, options: ImportOptions) -> ImportResult:
    data = read_json(path)
    if not sniff(data):
        raise SourceError(f"{path}: not a kv-cache-tester trace (no 'requests' with 'hash_ids')",
                          wrong_format=True)
    trace_id = str(data.get("id") or path.stem)
    block_size = as_int(data.get("block_size")) or 64
    scope = str(data.get("hash_id_scope", "local"))
    ns = None if scope == "global" else hash_namespace(trace_id)
    base = {"source": FORMAT, "source_file": path.name, "hash_id_scope": scope}
    if ns is not None:
        base["hash_namespace"] = ns
    notes: list[str] = []
    conversations: list[Conversation] = []
    top = {k: data[k] for k in ("models", "tool_tokens", "system_tokens", "totals") if k in data}
    _session(data["requests"], trace_id, f"{path}", block_size, ns, {**base, **top}, conversations, notes)
    return ImportResult(conversations, notes)


def _session(requests: list[Any], ident: str, where: str, block_size: int, ns: int | None,
             metadata: dict[str, Any], out: list[Conversation], notes: list[str]) -> None:
    calls: list[dict[str, Any]] = []
    subagents: list[tuple[int, dict[str, Any]]] = []
    for i, r in enumerate(requests):
        if not isinstance(r, dict):
            raise SourceError(f"{where}: requests[{i}] is not an object; fix the trace")
        if r.get("type") == "subagent":
            subagents.append((len(calls) - 1, r))
        else:
            calls.append(_check(r, f"{where}: requests[{i}]", block_size))
    if calls:
        turns, turn_meta = [], []
        for k, r in enumerate(calls):
            ids = r["hash_ids"] if ns is None else [(ns << 32) | h for h in r["hash_ids"]]
            meta = {key: r[key] for key in _TURN_KEYS if r.get(key) is not None}
            delay, source = 0.0, None
            if k + 1 < len(calls):
                nxt = calls[k + 1]
                if isinstance(nxt.get("think_time"), (int, float)):
                    delay, source = float(nxt["think_time"]), "think_time"
                elif isinstance(r.get("api_time"), (int, float)) and isinstance(nxt.get("t"), (int, float)) \
                        and isinstance(r.get("t"), (int, float)):
                    delay, source = float(nxt["t"]) - float(r["t"]) - float(r["api_time"]), "t-api_time"
                elif isinstance(nxt.get("t"), (int, float)) and isinstance(r.get("t"), (int, float)):
                    delay, source = float(nxt["t"]) - float(r["t"]), "t"
                meta["delay_source"] = source
            turns.append(Turn(hash_ids=ids, input_tokens=r["in"], output_tokens=r["out"], tool_delay_s=max(0.0, delay)))
            turn_meta.append(meta)
        model = metadata.get("model") or dig(metadata, "models", 0) or calls[0].get("model")
        out.append(Conversation(turns=turns, id=ident, block_size=block_size,
                                metadata={**metadata, "model": model, "turn_metadata": turn_meta}))
    else:
        notes.append(f"{where}: session {ident} has no model call; nothing to replay")
    for after, sa in subagents:
        sub_id = f"{ident}:{sa.get('agent_id', f'subagent{len(out)}')}"
        reqs = sa.get("requests")
        if not isinstance(reqs, list) or not reqs:
            notes.append(f"{where}: sub-agent {sub_id} has no requests (status {sa.get('status')!r}); skipped")
            continue
        sub_meta = {k: v for k, v in metadata.items() if k not in ("models", "tool_tokens", "system_tokens",
                                                                   "totals", "model", "turn_metadata")}
        sub_meta.update({k: sa[k] for k in ("agent_id", "subagent_type", "status", "duration_ms", "total_tokens",
                                            "tool_use_count", "models", "tool_tokens", "system_tokens") if k in sa})
        sub_meta.update({"parent_id": ident, "spawned_after_turn": after, "start_offset_s": sa.get("t")})
        _session(reqs, sub_id, f"{where}: sub-agent {sub_id}", block_size, ns, sub_meta, out, notes)


def _check(r: dict[str, Any], where: str, block_size: int) -> dict[str, Any]:
    n, o, ids = as_int(r.get("in")), as_int(r.get("out")), r.get("hash_ids")
    if n is None or n < 1:
        raise SourceError(f"{where}: field 'in' must be a positive integer, not {r.get('in')!r}; fix the trace")
    if o is None or o < 0:
        raise SourceError(f"{where}: field 'out' must be an integer >= 0, not {r.get('out')!r}; fix the trace")
    if not isinstance(ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h < 2**32
                                            for h in ids):
        raise SourceError(f"{where}: field 'hash_ids' must be a list of integers in [0, 2^32); fix the trace")
    if len(ids) not in (n // block_size, -(-n // block_size)):
        raise SourceError(f"{where}: {len(ids)} hash_ids do not cover in={n} tokens in blocks of {block_size}; "
                          "fix the trace or its block_size")
    return {**r, "in": n, "out": o}
