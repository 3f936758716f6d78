"""OpenAI-messages JSONL: one conversation per line.

Source line: ``{"messages": [...], "tools": [...], "id": ..., "metadata": {...}}`` or a bare list of
messages. Every assistant message is a recorded model reply, so the calls are the assistant
messages: call k was sent with every message before assistant message k.

- A leading system message with text content -> ``system``; ``tools`` -> ``tools``.
- ``simulated_tool_delay_ms_after`` on an assistant message -> that call's tool delay (ms -> s); on
  the line: a number for every call, or a list with one entry per call.
- ``usage`` on an assistant message (``completion_tokens``, ``prompt_tokens``,
  ``prompt_tokens_details.cached_tokens``), or ``output_tokens`` there -> the turn's counts;
  without them ``output_tokens`` is the reply counted with ``--tokenizer`` (turn metadata
  ``output_tokens_estimated``).
- Messages keep the keys a chat request accepts (role, content, name, tool_calls, tool_call_id).
  Messages after the last assistant message have no recorded call and are dropped (metadata
  ``trailing_messages``). A line without an assistant message has no call: skipped with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model import Conversation, Turn
from ..schema import check_tools
from .common import (ImportOptions, iter_jsonl, ImportResult, SourceError, as_int, clean_message, message_text,
                     split_system)

FORMAT = "openai-messages"


def sniff(obj: Any) -> bool:
    if isinstance(obj, list):
        return bool(obj) and all(isinstance(m, dict) and "role" in m for m in obj)
    return isinstance(obj, dict) and isinstance(obj.get("messages"), list)


def _delay_ms(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise SourceError(f"{where}: 'simulated_tool_delay_ms_after' must be a number of milliseconds >= 0, "
                          f"not {v!r}; fix or remove it")
    return float(v) / 1000.0


def convert(path: Path, options: ImportOptions) -> ImportResult:
    conversations: list[Conversation] = []
    notes: list[str] = []
    for where, lineno, obj in iter_jsonl(path, 'one conversation ({"messages": [...]})'):
        if not sniff(obj):
            raise SourceError(f"{where}: expected {{\"messages\": [...]}} or a list of messages; "
                              "fix the line", wrong_format=True)
        conv = _conversation(obj if isinstance(obj, dict) else {"messages": obj}, where, lineno, path, options)
        if conv is None:
            notes.append(f"{where}: no assistant message, so no recorded call; skipped")
        else:
            conversations.append(conv)
    return ImportResult(conversations, notes)


def _conversation(obj: dict[str, Any], where: str, lineno: int, path: Path,
                  options: ImportOptions) -> Conversation | None:
    raw = obj["messages"]
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise SourceError(f"{where}, messages[{i}]: a message must be an object with a string 'role'; "
                              'write {"role": "user", "content": "..."}')
    system, raw = split_system(raw)
    n_calls = sum(1 for m in raw if m["role"] == "assistant")
    if n_calls == 0:
        return None
    line_delay = obj.get("simulated_tool_delay_ms_after")
    if isinstance(line_delay, list) and len(line_delay) != n_calls:
        raise SourceError(f"{where}: 'simulated_tool_delay_ms_after' lists {len(line_delay)} delays for "
                          f"{n_calls} assistant messages; give one per assistant message")
    turns: list[Turn] = []
    turn_meta: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for i, m in enumerate(raw):
        if m["role"] != "assistant":
            pending.append(clean_message(m))
            continue
        k = len(turns)
        usage = m.get("usage") if isinstance(m.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
        out = as_int(usage.get("completion_tokens"))
        if out is None:
            out = as_int(m.get("output_tokens"))
        meta: dict[str, Any] = {}
        if out is None and options.estimate_output_tokens:
            out = options.count_tokens(message_text(m))
            meta["output_tokens_estimated"] = options.tokenizer
        if "simulated_tool_delay_ms_after" in m:
            delay = _delay_ms(m["simulated_tool_delay_ms_after"], f"{where}, messages[{i}]")
        elif isinstance(line_delay, list):
            delay = _delay_ms(line_delay[k], where)
        elif line_delay is not None:
            delay = _delay_ms(line_delay, where)
        else:
            delay = 0.0
        turns.append(Turn(messages=pending or [{"role": "user", "content": ""}], output_tokens=out,
                          tool_delay_s=delay, prompt_tokens=as_int(usage.get("prompt_tokens")),
                          cached_tokens=as_int(details.get("cached_tokens"))))
        turn_meta.append(meta)
        pending = [clean_message(m)]
    metadata = dict(obj.get("metadata") or {}) if isinstance(obj.get("metadata"), dict) else {}
    metadata.setdefault("source", FORMAT)
    metadata.setdefault("source_file", path.name)
    if pending[1:]:
        metadata["trailing_messages"] = len(pending) - 1
    if any(turn_meta):
        metadata["turn_metadata"] = turn_meta
    tools = check_tools(obj["tools"], where) if obj.get("tools") is not None else None
    return Conversation(turns=turns, system=system, id=str(obj.get("id") or f"{path.stem}-{lineno}"),
                        tools=tools, metadata=metadata)
