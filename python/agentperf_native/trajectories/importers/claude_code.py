"""Claude Code session logs (``~/.claude/projects/*/*.jsonl``).

Source: one JSON entry per line; ``type`` ``user``/``assistant`` entries carry an Anthropic
``message`` (content blocks ``text``, ``thinking``, ``tool_use``, ``tool_result``, ``image``), plus
``uuid``, ``sessionId``, ``isSidechain``, ``timestamp``; assistant messages carry ``model``,
``usage`` (``input_tokens``, ``cache_creation_input_tokens``, ``cache_read_input_tokens``,
``output_tokens``) and the ``requestId``. Claude Code writes one entry per content block of a reply,
so several entries share one ``message.id``/``requestId``: they are one model call.

- One model call (``requestId``, else ``message.id``, else the entry) = one turn; its text blocks
  become ``content``, its ``tool_use`` blocks ``tool_calls`` (``input`` as JSON arguments); thinking
  blocks are not replayed (the thinking tokens are inside ``output_tokens``).
- ``usage.output_tokens`` -> ``output_tokens`` (the largest seen among the call's entries);
  input + cache-creation + cache-read tokens -> ``prompt_tokens``; cache-read -> ``cached_tokens``;
  the raw usage -> turn metadata.
- ``tool_result`` blocks -> ``tool`` messages (``tool_call_id`` = ``tool_use_id``); text blocks of a
  user entry -> one user message; images are replaced by ``[image]``.
- tool delay after call k = timestamp of the last entry before call k+1 - timestamp of call k's
  last entry (it includes the user's own time when the next input is typed; turn metadata
  ``next_input`` says ``tool_result`` or ``user``).
- Entries with ``isSidechain: true`` (sub-agents) form their own trajectory per session, with
  ``metadata.parent_id``. Assistant entries from model ``<synthetic>`` are messages, not calls.
- Unreadable lines, entries without a usable message, and repeated ``uuid``s are skipped with a note;
  ``summary``/``system`` entries are not sent to a model and are skipped silently. System prompt and
  tool definitions are not in these logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import Conversation, Turn
from .common import ImportOptions, ImportResult, SourceError, as_int, gap_s, parse_time_s

FORMAT = "claude-code"


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("type"), str) and \
        any(k in obj for k in ("sessionId", "uuid", "leafUuid", "parentUuid", "message"))


@dataclass(eq=False)
class _Call:
    key: str
    pos: int
    text: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    stop_reason: str | None = None
    end_s: float | None = None
    thinking_blocks: int = 0

    def message(self) -> dict[str, Any]:
        m: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(self.text)}
        if self.tool_calls:
            m["tool_calls"] = self.tool_calls
        return m


@dataclass
class _Session:
    items: list[Any] = field(default_factory=list)  # messages (dict) and calls (_Call), in order
    times: list[float | None] = field(default_factory=list)


def _blocks(content: Any) -> list[Any] | None:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    return None


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for b in content:
            if isinstance(b, dict) and b.get("type") == "text":
                parts.append(str(b.get("text", "")))
            elif isinstance(b, dict) and b.get("type") == "image":
                parts.append("[image]")
        return "\n".join(parts)
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def _user_messages(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    text: list[str] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "tool_result":
            out.append({"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")),
                        "content": _result_text(b.get("content"))})
        elif kind == "text":
            text.append(str(b.get("text", "")))
        elif kind == "image":
            text.append("[image]")
    if text:
        out.append({"role": "user", "content": "\n\n".join(text)})
    return out


def convert(path: Path, options: ImportOptions) -> ImportResult:
    notes: list[str] = []
    skipped: dict[str, int] = {}
    sessions: dict[tuple[str, bool], _Session] = {}
    calls: dict[tuple[str, bool, str], _Call] = {}
    seen: set[str] = set()
    session_id = path.stem
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text ({e.reason}); pass a Claude Code session .jsonl file") from None

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for line in lines:
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            skip("not valid JSON")
            continue
        if not isinstance(e, dict):
            skip("not a JSON object")
            continue
        kind = e.get("type")
        if kind not in ("user", "assistant"):
            continue  # summary, system, file-history snapshots: never sent to the model
        msg = e.get("message")
        blocks = _blocks(msg.get("content")) if isinstance(msg, dict) else None
        if blocks is None:
            skip(f"{kind} entry without a readable message")
            continue
        uuid = e.get("uuid")
        if isinstance(uuid, str):
            if uuid in seen:
                skip("repeated uuid")
                continue
            seen.add(uuid)
        if isinstance(e.get("sessionId"), str):
            session_id = e["sessionId"]
        side = bool(e.get("isSidechain"))
        sess = sessions.setdefault((session_id, side), _Session())
        ts = parse_time_s(e.get("timestamp"))
        if kind == "user":
            for m in _user_messages(blocks):
                sess.items.append(m)
                sess.times.append(ts)
            continue
        model = msg.get("model")
        if model == "<synthetic>":  # written by Claude Code itself, not by a model call
            text = "\n\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
            sess.items.append({"role": "assistant", "content": text})
            sess.times.append(ts)
            continue
        key = str(e.get("requestId") or msg.get("id") or uuid or len(calls))
        call = calls.get((session_id, side, key))
        if call is None:
            call = calls[(session_id, side, key)] = _Call(key=key, pos=len(sess.items))
            sess.items.append(call)
            sess.times.append(ts)
        for b in blocks:
            if b.get("type") == "text":
                call.text.append(str(b.get("text", "")))
            elif b.get("type") == "tool_use":
                call.tool_calls.append({"id": str(b.get("id", "")), "type": "function", "function": {
                    "name": str(b.get("name", "")), "arguments": json.dumps(b.get("input", {}), ensure_ascii=False)}})
            elif b.get("type") in ("thinking", "redacted_thinking"):
                call.thinking_blocks += 1
        usage = msg.get("usage") if isinstance(msg.get("usage"), dict) else {}
        if (as_int(usage.get("output_tokens")) or -1) >= (as_int(call.usage.get("output_tokens")) or -1):
            call.usage = usage
        call.model = call.model or model
        call.stop_reason = msg.get("stop_reason") or call.stop_reason
        if ts is not None:
            call.end_s = ts if call.end_s is None else max(call.end_s, ts)
            sess.times[call.pos] = call.end_s  # a call is placed in time by its last entry

    conversations = []
    for (sid, side), sess in sessions.items():
        conv = _conversation(sess, sid, side, path, options)
        if conv is None:
            notes.append(f"{path}: session {sid}{' (sidechain)' if side else ''} has no model call; nothing to replay")
            continue
        if side:
            conv.metadata["parent_id"] = sid
        conversations.append(conv)
    for reason, n in skipped.items():
        notes.append(f"{path}: skipped {n} line(s): {reason}")
    return ImportResult(conversations, notes)


def _conversation(sess: _Session, sid: str, side: bool, path: Path, options: ImportOptions) -> Conversation | None:
    turns: list[Turn] = []
    turn_meta: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    pending_end: float | None = None
    prev_end: float | None = None
    models: list[str] = []
    for item, t in zip(sess.items, sess.times):
        if not isinstance(item, _Call):
            pending.append(item)
            pending_end = t if t is not None else pending_end
            continue
        if turns:
            turns[-1].tool_delay_s = gap_s(pending_end, prev_end) or 0.0  # 0 when nothing came between
            turn_meta[-1]["next_input"] = "user" if any(m["role"] == "user" for m in pending) else "tool_result"
        u = item.usage
        inp, create, read = (as_int(u.get(k)) for k in
                             ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        prompt = None if inp is None else inp + (create or 0) + (read or 0)
        out = as_int(u.get("output_tokens"))
        meta: dict[str, Any] = {"usage": u} if u else {}
        if item.stop_reason:
            meta["stop_reason"] = item.stop_reason
        if item.thinking_blocks:
            meta["thinking_blocks"] = item.thinking_blocks
        if out is None and options.estimate_output_tokens:
            out = options.count_tokens("\n".join(item.text + [c["function"]["arguments"] for c in item.tool_calls]))
            meta["output_tokens_estimated"] = options.tokenizer
        turns.append(Turn(messages=pending or [{"role": "user", "content": ""}], output_tokens=out,
                          prompt_tokens=prompt, cached_tokens=read if prompt is not None else None))
        turn_meta.append(meta)
        if item.model and item.model not in models:
            models.append(item.model)
        pending = [item.message()]
        pending_end = None
        prev_end = item.end_s
    if not turns:
        return None
    metadata: dict[str, Any] = {
        "source": FORMAT, "source_file": path.name, "model": models[0] if models else None,
        "session_id": sid, "system_prompt": "not recorded by the source", "tool_definitions": "not recorded by the source",
    }
    if len(models) > 1:
        metadata["models"] = models
    if side:
        metadata["sidechain"] = True
    if pending[1:]:
        metadata["trailing_messages"] = len(pending) - 1
    metadata["turn_metadata"] = turn_meta
    metadata = {k: v for k, v in metadata.items() if v is not None}
    ident = f"{sid}:sidechain" if side else sid
    return Conversation(turns=turns, id=ident, metadata=metadata)
