"""What every importer shares: options, results, message cleaning and token estimates."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from ..model import Conversation
from ..schema import TrajectoryError

# Keys an OpenAI chat request accepts in a message; everything else a recorder adds is dropped.
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


@dataclass
class ImportOptions:
    """Choices an importer needs where the source leaves something open."""

    tokenizer: str = "cl100k_base"  # counts output tokens for sources that record none (see estimate)
    estimate_output_tokens: bool = True  # False: leave output_tokens unset where the source has none
    mooncake_sessions: str = "prefix"  # "prefix": chain requests into sessions by their hash prefix; "none"
    _tok: Any = field(default=None, repr=False)

    def count_tokens(self, text: str) -> int:
        if self._tok is None:
            from ..tokens import load_tokenizer
            self._tok = load_tokenizer(self.tokenizer)
        return len(self._tok.encode(text))


@dataclass
class ImportResult:
    conversations: list[Conversation]
    notes: list[str] = field(default_factory=list)  # what the user should know: skipped entries, estimates


class SourceError(TrajectoryError):
    """A source file cannot be converted; the message names the file and what to do.

    ``wrong_format``: the file may be of another format than the one detected or forced; each
    command says how to name it (:func:`format_hint`), as no option is common to all of them."""

    def __init__(self, message: str, *, wrong_format: bool = False) -> None:
        super().__init__(message)
        self.wrong_format = wrong_format


def format_hint(error: Exception, how: str) -> str:
    """The message of ``error``, with ``how`` to name a file's format when that may help."""
    return f"{error}; {how}" if getattr(error, "wrong_format", False) else str(error)


def json_problem(e: json.JSONDecodeError, text: str) -> str:
    """What is wrong with a JSON text, in words: cut short (a truncated file), or where it breaks."""
    if e.pos >= len(text.rstrip()) or (e.msg.startswith("Unterminated string") and "\n" not in text.rstrip()):
        return "not valid JSON: it ends before the JSON does (a truncated or unfinished file?)"
    at = "" if e.msg.endswith(" at") else " at"
    if "\n" in text.rstrip():
        return f"not valid JSON ({e.msg}{at} line {e.lineno}, column {e.colno})"
    return f"not valid JSON ({e.msg}{at} column {e.colno})"


def read_json(path: Path) -> Any:
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise SourceError(f"{path}: {json_problem(e, e.doc)}; pass the original file", wrong_format=True) from None
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text ({e.reason}); pass a JSON trajectory file") from None


def iter_jsonl(path: Path, one_line_holds: str) -> Iterator[tuple[str, int, Any]]:
    """(``file:line``, line number, decoded object) for every non-blank line of a JSON Lines file;
    a line that is not JSON, or text that is not UTF-8, raises SourceError saying what each line must hold."""
    with path.open("r", encoding="utf-8") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    yield where, lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise SourceError(f"{where}: {json_problem(e, line)}; each line must hold {one_line_holds}") from None
        except UnicodeDecodeError as e:
            raise SourceError(f"{path}: not UTF-8 text ({e.reason}); each line must hold {one_line_holds}") from None


def clean_tool_calls(calls: Any) -> list[dict[str, Any]] | None:
    """Recorded tool calls -> OpenAI request form (id, type, function{name, arguments as a string})."""
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for c in calls:
        if not isinstance(c, dict):
            continue
        fn = as_dict(c.get("function"))
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        out.append({"id": str(c.get("id", "")), "type": "function",
                    "function": {"name": str(fn.get("name", "")), "arguments": args}})
    return out or None


def clean_message(m: dict[str, Any]) -> dict[str, Any]:
    """A recorded message -> the keys an OpenAI chat request accepts (role, content, name, tool_calls,
    tool_call_id); recorder extras (usage, timestamps, raw responses, reasoning) are dropped."""
    out = {k: m[k] for k in _MESSAGE_KEYS if k in m and m[k] is not None}
    if "tool_calls" in out:
        calls = clean_tool_calls(out["tool_calls"])
        if calls is None:
            del out["tool_calls"]
        else:
            out["tool_calls"] = calls
    out.setdefault("content", "")
    return out


def message_text(m: dict[str, Any]) -> str:
    """The text a model produced or read in a message: content (string or parts) and tool-call JSON."""
    parts: list[str] = []
    c = m.get("content")
    if isinstance(c, str):
        parts.append(c)
    elif isinstance(c, list):
        for p in c:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif isinstance(p, str):
                parts.append(p)
    for call in as_list(m.get("tool_calls")):
        fn = as_dict(as_dict(call).get("function"))
        parts.append(str(fn.get("name", "")))
        parts.append(str(fn.get("arguments", "")))
    return "\n".join(parts)


def parse_time_s(value: Any) -> float | None:
    """A recorded timestamp (epoch seconds, or ISO 8601 text) -> epoch seconds; None when absent/unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def gap_s(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, later - earlier)


def as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def as_dict(v: Any) -> dict[str, Any]:
    """`v` when it is a JSON object, else an empty one (a recorded field of an unexpected type reads as absent)."""
    return v if isinstance(v, dict) else {}


def as_list(v: Any) -> list[Any]:
    """`v` when it is a JSON array, else an empty one."""
    return v if isinstance(v, list) else []


def dig(obj: Any, *keys: str | int) -> Any:
    """obj[k0][k1]...: None as soon as a level is missing or of another type."""
    for k in keys:
        if isinstance(k, int) and isinstance(obj, list) and -len(obj) <= k < len(obj):
            obj = obj[k]
        elif isinstance(k, str) and isinstance(obj, dict):
            obj = obj.get(k)
        else:
            return None
    return obj


def split_system(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """A leading system message with text content becomes the conversation's system prompt."""
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return messages[0]["content"], messages[1:]
    return None, messages


_SWE_BENCH_ID = re.compile(r"^[A-Za-z0-9_.-]+__[A-Za-z0-9_.-]+-\d+$")


def swe_bench_language(instance_id: str) -> str | None:
    """SWE-bench task ids (``owner__repo-NUMBER``) name Python repositories; other ids: unknown."""
    return "python" if _SWE_BENCH_ID.match(instance_id) else None
