"""Mooncake trace JSONL (FAST'25 release): one request per line, no text.

Source line: ``timestamp`` (arrival, ms from the trace start), ``input_length``, ``output_length``,
``hash_ids`` (one per 512-token block of the prompt, the last one partial; equal ids = shareable
prefix blocks, across the whole trace).

- Each line -> one token-only turn: ``hash_ids`` as recorded, ``input_tokens`` = ``input_length``,
  ``output_tokens`` = ``output_length``; ``timestamp`` and the line number -> turn metadata.
- The trace has no session ids. With ``--mooncake-sessions prefix`` (default) requests are chained
  into sessions: a request continues the most recent not-yet-continued earlier request whose full
  blocks are all a prefix of its own, sharing at least 2 blocks (block 0 alone is a prompt shared by
  everything). With ``none`` every request is its own one-turn trajectory.
- tool delay between two turns of a session = the arrival gap (it includes the service time of the
  earlier request in the original system; turn metadata ``delay_source`` = ``arrival_gap``).
- ``metadata.start_s`` = arrival of the first request, for open-loop replays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model import Conversation, Turn
from .common import ImportOptions, ImportResult, SourceError, as_int, iter_jsonl

FORMAT = "mooncake"
BLOCK_SIZE = 512
MIN_SHARED_BLOCKS = 2


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and "hash_ids" in obj and "input_length" in obj


def _read(path: Path) -> list[dict[str, Any]]:
    rows = []
    for where, lineno, r in iter_jsonl(path, 'one request {"timestamp", "input_length", "output_length", "hash_ids"}'):
        if not sniff(r):
            raise SourceError(f"{where}: not a Mooncake request (an object with 'input_length' and 'hash_ids'); "
                              "fix the line", wrong_format=True)
        n, o, ts, ids = (as_int(r.get("input_length")), as_int(r.get("output_length")),
                         r.get("timestamp"), r.get("hash_ids"))
        if n is None or n < 1:
            raise SourceError(f"{where}: field 'input_length' must be a positive integer, not "
                              f"{r.get('input_length')!r}; fix the line")
        if o is None or o < 0:
            raise SourceError(f"{where}: field 'output_length' must be an integer >= 0, not "
                              f"{r.get('output_length')!r}; fix the line")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise SourceError(f"{where}: field 'timestamp' must be a number of milliseconds, not {ts!r}; fix the line")
        if not isinstance(ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 0
                                                for h in ids):
            raise SourceError(f"{where}: field 'hash_ids' must be a list of integers >= 0; fix the line")
        if len(ids) not in (n // BLOCK_SIZE, -(-n // BLOCK_SIZE)):
            raise SourceError(f"{where}: {len(ids)} hash_ids do not cover input_length={n} in blocks of "
                              f"{BLOCK_SIZE}; fix the line")
        rows.append({"line": lineno, "t_ms": ts, "in": n, "out": o, "ids": ids})
    return rows


def _chain(rows: list[dict[str, Any]]) -> list[list[int]]:
    """Sessions as lists of row indices (see the module docstring for the rule)."""
    index: dict[int, list[int]] = {}  # prefix key of a row's full blocks -> rows (open ones are tried)
    keys: list[list[int]] = []
    continued: set[int] = set()
    parent: list[int | None] = [None] * len(rows)
    for i, r in enumerate(rows):
        ids = r["ids"]
        prefix_keys, key = [], 0
        for h in ids:
            key = hash((key, h))
            prefix_keys.append(key)
        keys.append(prefix_keys)
        for length in range(len(ids), MIN_SHARED_BLOCKS - 1, -1):
            found = None
            for j in reversed(index.get(prefix_keys[length - 1], ())):
                if j not in continued and rows[j]["t_ms"] <= r["t_ms"] and rows[j]["ids"][:length] == ids[:length]:
                    found = j
                    break
            if found is not None:
                parent[i] = found
                continued.add(found)
                break
        full = len(ids) if r["in"] % BLOCK_SIZE == 0 else len(ids) - 1
        if full >= MIN_SHARED_BLOCKS:
            index.setdefault(prefix_keys[full - 1], []).append(i)
    sessions: dict[int, list[int]] = {}
    root: list[int] = [0] * len(rows)
    for i in range(len(rows)):
        p = parent[i]
        root[i] = i if p is None else root[p]
        sessions.setdefault(root[i], []).append(i)
    return list(sessions.values())


def convert(path: Path, options: ImportOptions) -> ImportResult:
    rows = _read(path)
    if not rows:
        return ImportResult([], [f"{path}: holds no requests"])
    if options.mooncake_sessions == "prefix":
        groups = _chain(rows)
    elif options.mooncake_sessions == "none":
        groups = [[i] for i in range(len(rows))]
    else:
        raise SourceError(f"mooncake sessions {options.mooncake_sessions!r}: use 'prefix' or 'none'")
    conversations = []
    for g in groups:
        turns, turn_meta = [], []
        for pos, i in enumerate(g):
            r = rows[i]
            meta: dict[str, Any] = {"timestamp_ms": r["t_ms"], "line": r["line"]}
            delay = 0.0
            if pos + 1 < len(g):
                delay = max(0.0, (rows[g[pos + 1]]["t_ms"] - r["t_ms"]) / 1000.0)
                meta["delay_source"] = "arrival_gap"
            turns.append(Turn(hash_ids=r["ids"], input_tokens=r["in"], output_tokens=r["out"], tool_delay_s=delay))
            turn_meta.append(meta)
        first = rows[g[0]]
        conversations.append(Conversation(
            turns=turns, id=f"{path.stem}-{first['line']:06d}", block_size=BLOCK_SIZE,
            metadata={"source": FORMAT, "source_file": path.name, "session_grouping": options.mooncake_sessions,
                      "start_s": first["t_ms"] / 1000.0, "turn_metadata": turn_meta}))
    return ImportResult(conversations)
