"""Pre-flight: one small streaming request before a run, so a misconfigured endpoint fails fast.

Checks that the endpoint answers, streams SSE, reports usage when asked (stream_options), and
whether it honours ``ignore_eos`` + ``min_tokens`` (exact output lengths). It goes through the
native client with the run's protocol, TLS and headers. A transient fault (no answer, a reset or
cut stream, 429/5xx) is retried twice; the outcome says what every attempt saw.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from . import _core
from .endpoint import Endpoint, Response, Transport, fetch


@dataclass
class Preflight:
    ok: bool
    status: int
    streamed_events: int
    output_events: int
    usage_reported: bool
    completion_tokens: int | None
    asked_tokens: int
    honours_exact_length: bool
    ttft_s: float | None
    problem: str | None = None
    protocol: str = ""
    attempts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def check(endpoint: Endpoint, model: str, transport: Transport | None = None, *, tokens: int = 16,
          attempts: int = 3) -> Preflight:
    transport = transport or Transport()
    seen: list[str] = []
    result = None
    for _ in range(attempts):
        result, resp = _check_once(endpoint, model, transport, tokens)
        if result.ok or not resp.transient:
            break
        seen.append(result.problem or f"HTTP {result.status}")
    assert result is not None
    result.attempts = seen
    if not result.ok and len(seen) > 1:
        result.problem = f"{len(seen)} attempts failed: " + "; ".join(seen)
    return result


def _check_once(endpoint: Endpoint, model: str, transport: Transport, tokens: int) -> tuple[Preflight, Response]:
    body = json.dumps({"model": model, "stream": True, "stream_options": {"include_usage": True},
                       "max_tokens": tokens, "min_tokens": tokens, "ignore_eos": True,
                       "messages": [{"role": "user", "content": "Count from one to one hundred."}]}).encode()
    t0 = time.monotonic()
    resp = fetch(endpoint, transport, "POST", "/chat/completions", body, stream=True)
    where = f"POST {endpoint.base_url}/chat/completions"
    fail = Preflight(False, resp.status, 0, 0, False, None, tokens, False, None, protocol=resp.protocol)
    if resp.error_kind:
        fail.problem = f"{where} failed ({resp.error_kind}): {resp.error}"
        return fail, resp
    if resp.status != 200:
        fail.problem = f"{where} answered HTTP {resp.status}: {resp.excerpt(300)}"
        return fail, resp
    parser = _core.SseParser()
    events = outputs = 0
    completion = None
    for ev in parser.feed(resp.body):
        events += 1
        if ev["output"]:
            outputs += 1
        if ev["usage"] and ev["completion_tokens"] >= 0:
            completion = ev["completion_tokens"]
    problem = None if outputs else "the stream carried no output (content/reasoning) events"
    return Preflight(ok=problem is None, status=resp.status, streamed_events=events, output_events=outputs,
                     usage_reported=completion is not None, completion_tokens=completion, asked_tokens=tokens,
                     honours_exact_length=completion == tokens, ttft_s=None, problem=problem,
                     protocol=resp.protocol), resp
