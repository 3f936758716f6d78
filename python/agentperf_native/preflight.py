"""Pre-flight: one small streaming request before a run, so a misconfigured endpoint fails fast.

Checks that the endpoint answers, streams SSE, reports usage when asked (stream_options), and
whether it honours ``ignore_eos`` + ``min_tokens`` (exact output lengths). Off the hot path: plain
urllib, one request.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from . import _core
from .endpoint import Endpoint


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

    def to_dict(self) -> dict:
        return asdict(self)


TRANSIENT_STATUSES = (429, 500, 502, 503, 504)


def check(endpoint: Endpoint, model: str, *, attempts: int = 3, **kw) -> Preflight:
    """The pre-flight request; a transient fault (connection error, reset, 429/5xx, a cut stream)
    is retried (``attempts`` in all), and the last answer says what every attempt saw."""
    seen: list[str] = []
    for _ in range(attempts):
        result = _check_once(endpoint, model, **kw)
        if result.ok or not (result.status == 0 or result.status in TRANSIENT_STATUSES):
            break
        seen.append(result.problem or f"HTTP {result.status}")
    if not result.ok and len(seen) > 1:
        result.problem = f"{len(seen)} attempts failed: " + "; ".join(seen)
    return result


def _check_once(endpoint: Endpoint, model: str, *, api_key: str | None = None, ca_file: str | None = None,
                insecure: bool = False, tokens: int = 16, timeout_s: float = 60.0) -> Preflight:
    body = json.dumps({"model": model, "stream": True, "stream_options": {"include_usage": True},
                       "max_tokens": tokens, "min_tokens": tokens, "ignore_eos": True,
                       "messages": [{"role": "user", "content": "Count from one to one hundred."}]}).encode()
    req = endpoint.request("/chat/completions", api_key, body)
    context = endpoint.ssl_context(ca_file, insecure)
    parser = _core.SseParser()
    events = outputs = 0
    completion = None
    first = None
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=context) as resp:
            status = resp.status
            while chunk := resp.read1(65536):
                for ev in parser.feed(chunk):
                    events += 1
                    if ev["output"]:
                        outputs += 1
                        first = first or time.monotonic()
                    if ev["usage"] and ev["completion_tokens"] >= 0:
                        completion = ev["completion_tokens"]
    except urllib.error.HTTPError as e:
        detail = e.read(300).decode("utf-8", "replace")
        return Preflight(False, e.code, 0, 0, False, None, tokens, False, None,
                         f"POST {endpoint.base_url}/chat/completions answered HTTP {e.code}: {detail}")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        return Preflight(False, 0, 0, 0, False, None, tokens, False, None,
                         f"POST {endpoint.base_url}/chat/completions failed: {e}")
    problem = None
    if outputs == 0:
        problem = "the stream carried no output (content/reasoning) events"
    return Preflight(ok=problem is None, status=status, streamed_events=events, output_events=outputs,
                     usage_reported=completion is not None, completion_tokens=completion, asked_tokens=tokens,
                     honours_exact_length=completion == tokens, ttft_s=(first - t0) if first else None,
                     problem=problem)
