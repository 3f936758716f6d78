"""SWE-agent ``.traj`` (``history``, ``trajectory``, ``info``).

Source: ``history`` holds the messages the model saw (system, optional demonstration, the task, then
per model call an assistant message — with ``tool_calls`` in function-calling mode — and the
observation as a tool or user message); ``trajectory`` holds one step per model call (``response``,
``action``, ``observation``, ``execution_time`` in newer versions); ``info.model_stats`` holds run
totals only (``tokens_sent``, ``tokens_received``, ``api_calls``, cost).

- One model call = one turn; there are ``len(trajectory)`` calls (a final call whose reply is in
  ``trajectory`` but not in ``history`` becomes a last turn whose messages are the trailing
  observation), or as many as ``history`` has assistant messages when ``trajectory`` is absent.
- No per-call usage is recorded: ``output_tokens`` is the reply counted with ``--tokenizer``
  (turn metadata ``output_tokens_estimated``), or unset with ``--no-estimate-output-tokens``.
- ``execution_time`` of step k -> tool delay after turn k (0 when absent).
- ``thought``/``action`` duplicates and ``agent``/``message_type`` labels are dropped from messages;
  a tool message takes the first of its ``tool_call_ids``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from ..model import Conversation, Turn
from .common import (ImportOptions, ImportResult, SourceError, as_int, as_list, clean_message, read_json,
                     swe_bench_language)

FORMAT = "swe-agent"


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("history"), list) and \
        ("trajectory" in obj or "info" in obj or not obj.get("messages"))


def _dict(v: Any) -> dict[str, Any]:
    if isinstance(v, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                v = parse(v)
                break
            except (ValueError, SyntaxError):
                continue
    return v if isinstance(v, dict) else {}


def _message(m: dict[str, Any]) -> dict[str, Any]:
    out = clean_message(m)
    if out["role"] == "tool" and "tool_call_id" not in out:
        ids = as_list(m.get("tool_call_ids"))
        if ids:
            out["tool_call_id"] = str(ids[0])
        else:  # an observation without a call id cannot be a tool message
            out["role"] = "user"
    return out


def convert(path: Path, options: ImportOptions) -> ImportResult:
    data = read_json(path)
    if not sniff(data):
        raise SourceError(f"{path}: not a SWE-agent trajectory (no 'history' list)", wrong_format=True)
    history = [m for m in data["history"] if isinstance(m, dict) and isinstance(m.get("role"), str)]
    steps = [s for s in as_list(data.get("trajectory")) if isinstance(s, dict)]
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    stats = _dict(info.get("model_stats"))
    system = None
    if history and history[0]["role"] == "system" and isinstance(history[0].get("content"), str):
        system = history[0]["content"]
        history = history[1:]
    # Split the history at assistant messages: chunks[0] precedes the first call, chunks[k] starts
    # with the reply of call k-1.
    chunks: list[list[dict[str, Any]]] = [[]]
    replies: list[str] = []
    for m in history:
        if m["role"] == "assistant":
            chunks.append([])
            replies.append(m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content")))
        chunks[-1].append(_message(m))
    n_assistant = len(replies)
    n_calls = len(steps) if steps else n_assistant
    notes: list[str] = []
    if n_calls not in (n_assistant, n_assistant + 1):
        notes.append(f"{path}: 'trajectory' has {len(steps)} steps for {n_assistant} assistant messages in 'history'; "
                     f"replaying the {n_assistant} calls of 'history'")
        n_calls = n_assistant
    if n_calls == n_assistant + 1:
        if len(chunks[-1]) <= 1 and n_assistant:  # no observation after the last reply: nothing new to send
            n_calls = n_assistant
        else:
            replies.append(str(steps[-1].get("response", "")))
    if n_calls == 0:
        return ImportResult([], [f"{path}: records no model call; nothing to replay"])
    turns: list[Turn] = []
    turn_meta: list[dict[str, Any]] = []
    for k in range(n_calls):
        msgs = chunks[k] or [{"role": "user", "content": ""}]
        meta: dict[str, Any] = {}
        out = None
        if options.estimate_output_tokens:
            out = options.count_tokens(replies[k])
            meta["output_tokens_estimated"] = options.tokenizer
        delay = 0.0
        if k < len(steps):
            try:
                delay = max(0.0, float(steps[k].get("execution_time")))
                meta["execution_time_s"] = delay
            except (TypeError, ValueError):
                pass
        turns.append(Turn(messages=msgs, output_tokens=out, tool_delay_s=delay if k < n_calls - 1 else 0.0))
        turn_meta.append(meta)
    rc = _dict(data.get("replay_config"))
    model = ((rc.get("agent") or {}).get("model") or {}).get("name")
    stem = path.name.removesuffix(".traj")
    instance = str(((rc.get("problem_statement") or {}).get("id")) or stem)
    metadata: dict[str, Any] = {
        "source": FORMAT, "source_file": path.name, "model": model, "language": swe_bench_language(instance),
        "instance_id": instance, "exit_status": info.get("exit_status"), "environment": data.get("environment"),
        "api_calls": as_int(stats.get("api_calls")), "tokens_sent": as_int(stats.get("tokens_sent")),
        "tokens_received": as_int(stats.get("tokens_received")), "instance_cost": stats.get("instance_cost"),
        "tool_definitions": "not recorded by the source", "turn_metadata": turn_meta,
    }
    if len(chunks) > n_calls and chunks[n_calls][1:]:
        metadata["trailing_messages"] = len(chunks[n_calls]) - 1
    metadata = {k: v for k, v in metadata.items() if v is not None}
    return ImportResult([Conversation(turns=turns, system=system, id=stem, metadata=metadata)], notes)
