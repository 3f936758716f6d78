"""Pre-flight: a few small streaming requests before a run, so a misconfigured endpoint fails fast
and the server's dialect (:mod:`agentperf_native.dialects`) is known before measuring.

First one request with only standard fields (model, stream, max_tokens, messages): the endpoint
must answer, stream SSE and carry output. Then, unless ``--dialect`` names one, the optional fields
one at a time — ``stream_options.include_usage``, ``ignore_eos``, ``min_tokens``,
``generation_config`` and a field no server knows — so a server that refuses one (transformers
serve answers 422 to ``ignore_eos``) is described, not failed. The server's self-description
(``/v1/models`` ``owned_by``, llama.cpp's ``/props``) gives the starting dialect; what the probes
saw corrects it. Everything goes through the native client with the run's protocol, TLS and
headers. A transient fault on the first request (no answer, a reset or cut stream, 429/5xx) is
retried twice; the outcome says what every attempt saw.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _core, dialects
from .dialects import Dialect, ProbeResult
from .endpoint import Endpoint, Response, Transport, _hint, base_url_hint, fetch

PROMPT = "Count from one to one hundred."
UNKNOWN_FIELD = "agentperf_unknown_field_probe"


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
    dialect: str = ""                  # the chosen dialect's name
    dialect_source: str = ""           # "probed" (from the server's self-description and probes) or "--dialect"
    identified_as: str = ""            # what the server's self-description suggested
    done_marker: bool | None = None
    cached_tokens_reported: bool | None = None
    probes: dict[str, dict] = field(default_factory=dict)  # optional field -> what the server did with it
    requests: int = 0                  # requests the pre-flight sent (each asked for asked_tokens)
    tokens_generated: int = 0          # output tokens the server reported for them
    requests_without_usage: int = 0    # answered requests whose output tokens the server did not report
    chosen: Dialect | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("chosen", None)
        return d


@dataclass
class _Stream:
    events: int = 0
    outputs: int = 0
    completion: int | None = None
    usage: bool = False
    cached: bool = False
    done: bool = False
    reasoning_field: str | None = None


def _read_stream(body: bytes) -> _Stream:
    s = _Stream()
    for ev in _core.SseParser().feed(body):
        s.events += 1
        s.outputs += bool(ev["output"])
        s.done |= bool(ev["done"])
        if ev["usage"]:
            s.usage = True
            if ev["completion_tokens"] >= 0:
                s.completion = ev["completion_tokens"]
            s.cached |= ev["cached_tokens"] >= 0
    # which delta field carries reasoning text (decoded here: the pre-flight is not the hot path)
    for line in body.split(b"\n"):
        if line.startswith(b"data:") and b"reasoning" in line:
            try:
                delta = json.loads(line[5:])["choices"][0]["delta"]
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            for key in ("reasoning_content", "reasoning"):
                if delta.get(key):
                    s.reasoning_field = key
                    break
    return s


def _body(model: str, tokens: int, extra: dict[str, Any] | None = None) -> bytes:
    req: dict[str, Any] = {"model": model, "stream": True, "max_tokens": tokens,
                           "messages": [{"role": "user", "content": PROMPT}]}
    req.update(extra or {})
    return json.dumps(req).encode()


def check(endpoint: Endpoint, model: str, transport: Transport | None = None, *, tokens: int = 16,
          attempts: int = 3, dialect: str = "auto", output: str = "recorded",
          listing: list[dict] | None = None) -> Preflight:
    """Runs the pre-flight. ``dialect`` "auto" probes; a name uses that dialect (its fields are
    still sent once, so a wrong choice fails here). ``output`` is the run's ``--output-length``."""
    transport = transport or Transport()
    where = f"POST {endpoint.base_url}/chat/completions"
    seen: list[str] = []
    problem: str | None = None
    for _ in range(attempts):
        resp = fetch(endpoint, transport, "POST", "/chat/completions", _body(model, tokens), stream=True)
        problem = _problem(resp, where, transport, endpoint)
        if problem is None:
            break
        seen.append(problem)
        if not resp.transient:
            break
    pre = Preflight(False, resp.status, 0, 0, False, None, tokens, False, None, protocol=resp.protocol, attempts=seen)
    if problem is not None:
        pre.problem = problem if len(seen) <= 1 else f"{len(seen)} attempts failed: " + "; ".join(seen)
        return pre
    base = _read_stream(resp.body)
    pre.requests = len(seen) + 1
    _count(pre, base.completion)
    pre.streamed_events, pre.output_events, pre.ttft_s = base.events, base.outputs, None
    pre.completion_tokens = base.completion
    if not base.events:
        pre.problem = (f"{where} answered HTTP 200 but no event stream (it answered {resp.excerpt()}); "
                       f"{base_url_hint(endpoint)}")
        return pre
    if not base.outputs:
        pre.problem = f"{where}: the stream carried no output (content/reasoning) events"
        return pre
    pre.done_marker = base.done

    props = _props(endpoint, transport)
    start = dialects.identify(listing, resp.headers, props)
    pre.identified_as = start.name
    if dialect != "auto":
        chosen = dialects.get(dialect)
        pre.dialect_source = "--dialect"
        extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if chosen.request_usage else {}
        if output != "recorded" and chosen.exact_length != "none":
            extra.update(chosen.length_fields("exact", tokens))
        r = fetch(endpoint, transport, "POST", "/chat/completions", _body(model, tokens, extra), stream=True)
        bad = _problem(r, where, transport, endpoint)
        if bad:
            pre.problem = f"with --dialect {dialect} ({', '.join(extra) or 'standard fields'}): {bad}"
            return pre
        s = _read_stream(r.body)
        pre.requests += 1
        _count(pre, s.completion)
        usage, completion, cached = s.usage or base.usage, s.completion, s.cached or base.cached
        exact = chosen.exact_length != "none" and (output == "recorded" or completion == tokens)
    else:
        pre.dialect_source = "probed"
        probes: dict[str, ProbeResult] = {}
        usage, completion, cached = base.usage, base.completion, base.cached
        asked = None
        if not base.usage:
            asked = _probe(endpoint, transport, model, tokens, {"stream_options": {"include_usage": True}})
            probes["stream_options"] = asked
            if asked.accepted and asked.completion_tokens is not None:
                usage, completion = True, asked.completion_tokens
                cached = cached or asked.detail == "cached"
        usage_extra = {"stream_options": {"include_usage": True}} if asked is not None and asked.accepted else {}
        for key, fields in (("ignore_eos", {"ignore_eos": True}), ("min_tokens", {"min_tokens": tokens}),
                            ("generation_config", {"generation_config": json.dumps({"min_new_tokens": tokens})}),
                            ("unknown", {UNKNOWN_FIELD: True})):
            probes[key] = _probe(endpoint, transport, model, tokens, {**usage_extra, **fields})
        chosen = dialects.settle(start, usage_unasked=base.usage, usage_asked=usage and not base.usage,
                                 done_marker=base.done, cached_reported=cached,
                                 reasoning_field=base.reasoning_field, probes=probes, asked_tokens=tokens)
        pre.probes = {k: asdict(v) for k, v in probes.items()}
        for p in probes.values():
            pre.requests += 1
            if p.accepted:
                _count(pre, p.completion_tokens)
        exact = chosen.exact_length != "none"
    pre.ok = True
    pre.usage_reported = usage
    pre.completion_tokens = completion
    pre.cached_tokens_reported = cached
    pre.honours_exact_length = exact
    pre.dialect = chosen.name
    pre.chosen = chosen
    return pre


def _count(pre: Preflight, completion: int | None) -> None:
    if completion is None:
        pre.requests_without_usage += 1
    else:
        pre.tokens_generated += completion


def _problem(resp: Response, where: str, transport: Transport, endpoint: Endpoint) -> str | None:
    if resp.error_kind:
        return f"{where} failed ({resp.error_kind}): {resp.error}; {_hint(resp, transport, endpoint)}"
    if resp.status in (404, 405):  # no such route, or no such model (vLLM answers 404 to an unknown model)
        hint = "pass a model it serves to --model" if b"model" in resp.body.lower() else base_url_hint(endpoint)
        return f"{where} answered HTTP {resp.status}: {resp.excerpt(300)}; {hint}"
    if resp.status != 200:
        return f"{where} answered HTTP {resp.status}: {resp.excerpt(300)}"
    return None


def _probe(endpoint: Endpoint, transport: Transport, model: str, tokens: int, fields: dict) -> ProbeResult:
    resp = fetch(endpoint, transport, "POST", "/chat/completions", _body(model, tokens, fields), stream=True)
    if resp.error_kind or resp.status != 200:
        detail = resp.error if resp.error_kind else resp.excerpt(200)
        return ProbeResult(fields, resp.status, False, None, detail)
    s = _read_stream(resp.body)
    return ProbeResult(fields, resp.status, s.outputs > 0, s.completion, "cached" if s.cached else "")


def _props(endpoint: Endpoint, transport: Transport) -> dict | None:
    """llama.cpp's ``/props`` (server settings, the context size), or None."""
    resp = fetch(endpoint, transport, "GET", "/props", root=True)
    if resp.error_kind or resp.status != 200:
        return None
    try:
        data = json.loads(resp.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
