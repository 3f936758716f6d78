"""mini-swe-agent ``.traj.json`` (``trajectory_format`` ``mini-swe-agent-1.x``).

Source: ``messages`` (system, the task, then per model call an assistant message whose
``extra.response`` is the raw API response with ``usage`` and ``extra.timestamp``, then one tool (or
user) message per action with ``extra.timestamp``), ``info`` (``model_stats``, ``exit_status``,
``config``). One assistant message = one model call = one turn:

- ``usage.completion_tokens`` -> ``output_tokens``; ``usage.prompt_tokens`` -> ``prompt_tokens``;
  ``prompt_tokens_details.cached_tokens`` (or ``prompt_cache_hit_tokens``) -> ``cached_tokens``;
  reasoning tokens, cache-miss tokens, finish reason, response time and cost -> turn metadata.
- tool delay after call k = last action timestamp before call k+1 - response timestamp of call k.
- A call that failed (``api_calls`` counts it, no response recorded) has no turn; metadata
  ``unanswered_calls`` counts them. A run whose only call failed yields no trajectory (a note says so).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ..model import Conversation, Turn
from .common import (ImportOptions, ImportResult, SourceError, as_dict, as_int, clean_message, dig, gap_s,
                     message_text, parse_time_s, read_json, swe_bench_language)

FORMAT = "mini-swe-agent"


def sniff(obj: Any) -> bool:
    return isinstance(obj, dict) and (str(obj.get("trajectory_format", "")).startswith("mini-swe-agent")
                                      or (isinstance(obj.get("messages"), list) and isinstance(obj.get("info"), dict)))


def _stats(info: dict[str, Any]) -> dict[str, Any]:
    s = info.get("model_stats")
    if isinstance(s, str):  # some versions store the dict's repr
        try:
            s = ast.literal_eval(s)
        except (ValueError, SyntaxError):
            s = None
    return s if isinstance(s, dict) else {}


def convert(path: Path, options: ImportOptions) -> ImportResult:
    data = read_json(path)
    if not sniff(data):
        raise SourceError(f"{path}: not a mini-swe-agent trajectory (no 'messages' and 'info')",
                          wrong_format=True)
    if not isinstance(data.get("messages"), list):
        raise SourceError(f"{path}: field 'messages' must be a list of messages; pass the original trajectory",
                          wrong_format=True)
    info = as_dict(data.get("info"))
    stats = _stats(info)
    messages = [m for m in data["messages"] if isinstance(m, dict)]
    system = None
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        system = messages[0]["content"]
        messages = messages[1:]
    turns: list[Turn] = []
    turn_meta: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    last_action_ts: float | None = None
    prev_response_ts: float | None = None
    model = None
    for m in messages:
        role = m.get("role")
        extra = m.get("extra") if isinstance(m.get("extra"), dict) else {}
        if role == "exit":  # the run's end marker, never sent to a model
            continue
        if role != "assistant":
            pending.append(clean_message(m))
            ts = parse_time_s(extra.get("timestamp"))
            if ts is not None:
                last_action_ts = ts
            continue
        if turns:
            turns[-1].tool_delay_s = gap_s(last_action_ts, prev_response_ts) or 0.0
        response = extra.get("response") if isinstance(extra.get("response"), dict) else {}
        usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
        cdetails = usage.get("completion_tokens_details") if isinstance(usage.get("completion_tokens_details"), dict) else {}
        cached = as_int(details.get("cached_tokens"))
        if cached is None:
            cached = as_int(usage.get("prompt_cache_hit_tokens"))
        out = as_int(usage.get("completion_tokens"))
        meta: dict[str, Any] = {}
        if out is None and options.estimate_output_tokens:
            out = options.count_tokens(message_text(m))
            meta["output_tokens_estimated"] = options.tokenizer
        turns.append(Turn(messages=pending or [{"role": "user", "content": ""}], output_tokens=out,
                          prompt_tokens=as_int(usage.get("prompt_tokens")), cached_tokens=cached))
        for key, value in (("reasoning_tokens", cdetails.get("reasoning_tokens")),
                           ("prompt_cache_miss_tokens", usage.get("prompt_cache_miss_tokens")),
                           ("finish_reason", dig(response, "choices", 0, "finish_reason")),
                           ("response_time_s", parse_time_s(extra.get("timestamp"))),
                           ("cost", extra.get("cost"))):
            if value is not None:
                meta[key] = value
        turn_meta.append(meta)
        model = model or response.get("model")
        prev_response_ts = parse_time_s(extra.get("timestamp"))
        last_action_ts = None
        pending = [clean_message(m)]
    ident = str(data.get("instance_id") or path.name.removesuffix(".json").removesuffix(".traj"))
    api_calls = as_int(stats.get("api_calls"))
    if not turns:
        return ImportResult([], [f"{path}: records no answered model call (exit status "
                                 f"{info.get('exit_status')!r}, {api_calls} API call(s) attempted); nothing to replay"])
    config_model = dig(info, "config", "model", "model_name")
    metadata: dict[str, Any] = {
        "source": FORMAT, "source_file": path.name, "source_dir": path.parent.name,
        "model": config_model or model, "language": swe_bench_language(ident),
        "response_model": model, "trajectory_format": data.get("trajectory_format"),
        "mini_version": info.get("mini_version"), "exit_status": info.get("exit_status"),
        "api_calls": api_calls, "instance_cost": stats.get("instance_cost"),
        "tool_definitions": "not recorded by the source",
    }
    notes = []
    if api_calls is not None and api_calls > len(turns):
        metadata["unanswered_calls"] = api_calls - len(turns)
    if pending[1:]:
        metadata["trailing_messages"] = len(pending) - 1
    metadata["turn_metadata"] = turn_meta
    metadata = {k: v for k, v in metadata.items() if v is not None}
    return ImportResult([Conversation(turns=turns, system=system, id=ident, metadata=metadata)], notes)
