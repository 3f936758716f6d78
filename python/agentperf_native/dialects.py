"""Server dialects: what each OpenAI-compatible server accepts and emits, as data.

Every server speaks "OpenAI chat completions" a little differently. Where the tool depends on a
difference, the difference is a field of :class:`Dialect` — never an ``if server == ...`` in the
request path. The pre-flight (:mod:`agentperf_native.preflight`) identifies the server, probes the
optional fields one at a time and settles on a dialect (``--dialect`` overrides); the chosen
dialect decides which fields every request carries and goes into the manifest.

The facts come from the servers' public documentation and code, and (for vLLM on CPU, llama.cpp's
``llama-server`` and ``transformers serve``) from running them (``scripts/servers/``); the SSE
samples in ``tests/data/dialects/`` are what each emits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

#: How a server can be made to generate exactly N tokens.
EXACT_METHODS = (
    "ignore_eos+min_tokens",  # "max_tokens": N, "min_tokens": N, "ignore_eos": true
    "ignore_eos",             # "max_tokens": N, "ignore_eos": true (min_tokens is ignored or refused)
    "generation_config",      # "max_tokens": N, "generation_config": "{\"min_new_tokens\": N}" (a JSON string)
    "none",                   # no way: --output-length exact is refused
)


@dataclass(frozen=True)
class Dialect:
    name: str
    title: str
    exact_length: str = "ignore_eos+min_tokens"  # one of EXACT_METHODS
    usage: str = "stream_options"   # "stream_options": only when asked; "always": sent unasked
    done_marker: bool = True        # the stream ends with "data: [DONE]"
    reasoning_field: str = "reasoning_content"  # the delta field carrying reasoning text
    token_id_prompts: bool = True   # /v1/completions accepts "prompt": [token ids]
    unknown_fields: str = "ignored"  # "ignored" or "rejected" (HTTP 4xx on any field it does not know)
    cached_tokens: str = "prompt_tokens_details"  # where usage reports cached prompt tokens, or "none"
    cached_tokens_flag: str | None = None  # the server flag without which cached_tokens is absent
    metrics_prefix: str | None = None  # Prometheus /metrics family prefix
    context_limit: str | None = None   # where the context limit is read: "models.max_model_len", "props", None
    owned_by: tuple[str, ...] = ()     # /v1/models "owned_by" values that identify the server
    notes: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    # ---- what a request carries -------------------------------------------------------------------

    def length_fields(self, output: str, n: int | None) -> dict[str, Any]:
        """The length fields of one request for an ``--output-length`` mode (``exact``, ``recorded``,
        ``fixed:N`` — fixed is exact at N). ``n`` None: no cap."""
        if n is None:
            return {}
        fields: dict[str, Any] = {"max_tokens": n}
        if output == "recorded":
            return fields
        method = self.exact_length
        if method == "none":
            raise DialectError(self.exact_refusal())
        if method in ("ignore_eos+min_tokens", "ignore_eos"):
            fields["ignore_eos"] = True
        if method == "ignore_eos+min_tokens":
            fields["min_tokens"] = n
        if method == "generation_config":
            fields["generation_config"] = json.dumps({"min_new_tokens": n})
        return fields

    @property
    def request_usage(self) -> bool:
        """Whether requests carry ``stream_options.include_usage``."""
        return self.usage == "stream_options"

    def exact_refusal(self) -> str:
        return (f"the server ({self.title}) has no way to force an exact output length that the pre-flight "
                f"could confirm{': ' + self.notes if self.notes else ''}; use --output-length recorded")

    def cached_tokens_note(self) -> str | None:
        """What to tell the user when usage reports no cached tokens."""
        if self.cached_tokens == "none":
            return f"{self.title} does not report cached prompt tokens; cached_tokens is -1 in every record"
        if self.cached_tokens_flag:
            return (f"the server reports no cached prompt tokens (usage.prompt_tokens_details.cached_tokens); "
                    f"{self.title} sends them only when started with {self.cached_tokens_flag}")
        return "the server reports no cached prompt tokens; cached_tokens is -1 in every record"


class DialectError(ValueError):
    """A dialect cannot do what the run asks; the message says what to do."""


OPENAI = Dialect("openai", "an OpenAI-compatible server", notes="")

DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    OPENAI,
    Dialect("vllm", "vLLM", reasoning_field="reasoning", cached_tokens_flag="--enable-prompt-tokens-details",
            metrics_prefix="vllm:", context_limit="models.max_model_len", owned_by=("vllm",),
            notes="reasoning text in delta.reasoning since early 2026 (delta.reasoning_content before)"),
    Dialect("sglang", "SGLang", cached_tokens_flag="--enable-cache-report", metrics_prefix="sglang:",
            context_limit="models.max_model_len", owned_by=("sglang",)),
    Dialect("trtllm", "TensorRT-LLM (trtllm-serve)", unknown_fields="rejected", reasoning_field="reasoning_content",
            metrics_prefix=None, owned_by=("tensorrt_llm", "tensorrt-llm", "trtllm"),
            notes="requests are validated with extra='forbid': any field it does not know is HTTP 400; usage is "
                  "streamed by default"),
    Dialect("dynamo", "NVIDIA Dynamo", usage="always", cached_tokens="none", metrics_prefix="dynamo_",
            owned_by=("nvidia", "dynamo"), notes="older releases always stream usage and report cached tokens as null"),
    Dialect("llama.cpp", "llama.cpp (llama-server)", exact_length="ignore_eos", metrics_prefix="llamacpp:",
            context_limit="props", owned_by=("llamacpp",),
            notes="min_tokens is silently ignored; max_tokens + ignore_eos gives exact lengths; /metrics only "
                  "with --metrics; the server closes the connection after every streamed response"),
    Dialect("transformers", "transformers serve", exact_length="generation_config", usage="always",
            done_marker=False, cached_tokens="none", token_id_prompts=False, unknown_fields="rejected",
            owned_by=("huggingface",),
            notes="ignore_eos and min_tokens are HTTP 422; exact lengths through generation_config "
                  "{\"min_new_tokens\": N} sent as a JSON string"),
    Dialect("agentperf-sim", "the agentperf-native simulator", reasoning_field="reasoning_content",
            metrics_prefix="agentperf_sim_", context_limit="models.max_model_len", owned_by=("agentperf",)),
)}


def get(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise DialectError(f"unknown dialect {name!r}: use auto or one of {', '.join(DIALECTS)}") from None


def identify(listing: list[dict] | None = None, headers: list[tuple[str, str]] | None = None,
             props: dict | None = None) -> Dialect:
    """The server's dialect from what it says about itself: ``/v1/models`` entries (``owned_by``),
    response headers (``server``), llama.cpp's ``/props``. Unknown servers get the generic one."""
    if props and ("default_generation_settings" in props or "total_slots" in props):
        return DIALECTS["llama.cpp"]
    for entry in listing or []:
        owner = str(entry.get("owned_by", "")).lower()
        for d in DIALECTS.values():
            if owner and owner in d.owned_by:
                return d
    for key, value in headers or []:
        if key.lower() == "server":
            v = value.lower()
            if "llama" in v:
                return DIALECTS["llama.cpp"]
    return OPENAI


@dataclass
class ProbeResult:
    """What the pre-flight saw for one optional request field (or group of fields)."""

    fields: dict[str, Any]
    status: int
    accepted: bool
    completion_tokens: int | None = None
    detail: str = ""


def settle(base: Dialect, *, usage_unasked: bool, usage_asked: bool | None, done_marker: bool,
           cached_reported: bool, reasoning_field: str | None, probes: dict[str, ProbeResult],
           asked_tokens: int) -> Dialect:
    """The dialect the pre-flight observed: the identified one, corrected by what the probes saw.

    ``probes`` holds the outcome of requests carrying each optional field alone (keys
    ``ignore_eos``, ``min_tokens``, ``generation_config``, ``unknown``)."""
    changes: dict[str, Any] = {}
    if usage_unasked:
        changes["usage"] = "always"
    elif usage_asked:
        changes["usage"] = "stream_options"
    changes["done_marker"] = done_marker
    if reasoning_field:
        changes["reasoning_field"] = reasoning_field
    if "unknown" in probes:
        changes["unknown_fields"] = "ignored" if probes["unknown"].accepted else "rejected"

    def exact(key: str) -> bool:
        p = probes.get(key)
        return bool(p and p.accepted and p.completion_tokens == asked_tokens)

    min_ok = probes.get("min_tokens")
    if exact("ignore_eos") and min_ok is not None and min_ok.accepted and base.exact_length != "ignore_eos":
        changes["exact_length"] = "ignore_eos+min_tokens"
    elif exact("ignore_eos"):
        changes["exact_length"] = "ignore_eos"
    elif exact("generation_config"):
        changes["exact_length"] = "generation_config"
    elif probes:
        changes["exact_length"] = "none"
    if not cached_reported and base.cached_tokens == "prompt_tokens_details" and not base.cached_tokens_flag:
        pass  # the generic dialect: absent cached tokens are reported by the caller
    return replace(base, **changes)
