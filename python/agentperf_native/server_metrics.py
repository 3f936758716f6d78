"""The server's own view beside every probe: its Prometheus ``/metrics``, scraped during the run.

A task of the orchestration loop (:meth:`~agentperf_native.orchestrate.Orchestrator.spawn`) fetches
``/metrics`` every ``interval_s`` through the native client (the run's protocol, TLS and
credentials), keeps the few series that say how the server coped — requests running and waiting,
KV-cache usage, prefix-cache hits and queries, preemptions — under one name per quantity whatever
the server calls it (vLLM ``vllm:``, SGLang ``sglang:``, llama.cpp ``llamacpp:`` with
``--metrics``, the simulator ``agentperf_sim_``), and turns any window into figures
(:meth:`ServerMetricsSampler.window`): gauges as mean and max over the window, counters as their
increase, the prefix-cache hit rate as hits / queries over the window. The whole timeline goes to
``server_metrics.csv``.
"""

from __future__ import annotations

import asyncio
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .engine import now_ns
from .power.prometheus import parse_text

#: quantity -> (kind, metric names in order of preference; the first family that has one wins)
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": {
        "running": ("vllm:num_requests_running",),
        "waiting": ("vllm:num_requests_waiting",),
        "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "prefix_cache_hits": ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"),
        "prefix_cache_queries": ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"),
        "preemptions": ("vllm:num_preemptions",),
        "generation_tokens": ("vllm:generation_tokens",),
        "prompt_tokens": ("vllm:prompt_tokens",),
    },
    "sglang": {
        "running": ("sglang:num_running_reqs",),
        "waiting": ("sglang:num_queue_reqs",),
        "kv_cache_usage": ("sglang:token_usage",),
        "prefix_cache_hit_rate": ("sglang:cache_hit_rate",),
        "preemptions": ("sglang:num_retracted_reqs",),
        "generation_tokens": ("sglang:generation_tokens",),
        "prompt_tokens": ("sglang:prompt_tokens",),
    },
    "llama.cpp": {
        "running": ("llamacpp:requests_processing",),
        "waiting": ("llamacpp:requests_deferred",),
        "kv_cache_usage": ("llamacpp:kv_cache_usage_ratio",),
        "generation_tokens": ("llamacpp:tokens_predicted",),
        "prompt_tokens": ("llamacpp:prompt_tokens",),
    },
    "agentperf-sim": {
        "running": ("agentperf_sim_requests_running",),
        "waiting": ("agentperf_sim_requests_waiting",),
        "kv_cache_usage": ("agentperf_sim_kv_cache_usage_ratio",),
        "prefix_cache_hits": ("agentperf_sim_prefix_cache_hits",),
        "prefix_cache_queries": ("agentperf_sim_prefix_cache_queries",),
        "generation_tokens": ("agentperf_sim_generation_tokens",),
        "prompt_tokens": ("agentperf_sim_prompt_tokens",),
    },
}
GAUGES = ("running", "waiting", "kv_cache_usage", "prefix_cache_hit_rate")
COUNTERS = ("prefix_cache_hits", "prefix_cache_queries", "preemptions", "generation_tokens", "prompt_tokens")


def read(text: str, family: str | None = None) -> tuple[str | None, dict[str, float]]:
    """The known quantities in a Prometheus text exposition: (family, {quantity: value}), every
    series of a metric summed (e.g. one per engine). ``family`` None: the first family present."""
    families = [family] if family else list(FAMILIES)
    for fam in families:
        names = {n for ns in FAMILIES[fam].values() for n in ns}
        samples = parse_text(text, names)
        if not samples:
            continue
        sums: dict[str, float] = {}
        for s in samples:
            sums[s.name] = sums.get(s.name, 0.0) + s.value
        out = {}
        for quantity, candidates in FAMILIES[fam].items():
            for name in candidates:
                if name in sums:
                    out[quantity] = sums[name]
                    break
        return fam, out
    return None, {}


@dataclass
class Scrape:
    t_ns: int
    values: dict[str, float]


class ServerMetricsSampler:
    """Scrapes ``fetch()`` (returns the exposition text, or None when it failed) every ``interval_s``
    on the running loop; the blocking fetch runs in a thread."""

    def __init__(self, fetch: Callable[[], str | None], *, interval_s: float = 1.0, family: str | None = None,
                 url: str = "") -> None:
        self.fetch = fetch
        self.interval_s = interval_s
        self.family = family
        self.url = url
        self.timeline: list[Scrape] = []
        self.failures = 0

    def scrape_once(self) -> bool:
        t0 = now_ns()
        text = self.fetch()
        t1 = now_ns()
        if text is None:
            self.failures += 1
            return False
        family, values = read(text, self.family)
        if family is None:
            self.failures += 1
            return False
        self.family = family
        self.timeline.append(Scrape((t0 + t1) // 2, values))  # stamped at the fetch's midpoint
        return True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await asyncio.to_thread(self.scrape_once)
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def window_settled(self, start_ns: int, end_ns: int) -> dict | None:
        """The window's figures once a scrape after its end exists (one more scrape if needed)."""
        if not self.timeline or self.timeline[-1].t_ns < end_ns:
            await asyncio.to_thread(self.scrape_once)
        return self.window(start_ns, end_ns)

    def window(self, start_ns: int, end_ns: int) -> dict | None:
        """Figures over ``[start_ns, end_ns]``: gauges' mean and max of the scrapes inside; counters'
        increase from the last scrape at or before the start to the first at or after the end."""
        inside = [s for s in self.timeline if start_ns <= s.t_ns <= end_ns]
        before = [s for s in self.timeline if s.t_ns <= start_ns]
        after = [s for s in self.timeline if s.t_ns >= end_ns]
        if not inside and not (before and after):
            return None
        out: dict = {"family": self.family, "scrapes": len(inside)}
        for q in GAUGES:
            vals = [s.values[q] for s in inside if q in s.values]
            if vals:
                out[q] = {"mean": sum(vals) / len(vals), "max": max(vals)}
        first = before[-1] if before else (inside[0] if inside else None)
        last = after[0] if after else (inside[-1] if inside else None)
        if first is not None and last is not None and last is not first:
            for q in COUNTERS:
                if q in first.values and q in last.values:
                    # a counter that went down was reset (a server restart): count from zero
                    d = last.values[q] - first.values[q]
                    out[q] = d if d >= 0 else last.values[q]
            hits, queries = out.get("prefix_cache_hits"), out.get("prefix_cache_queries")
            if hits is not None and queries:
                out["prefix_cache_hit_rate_window"] = hits / queries
        return out

    def write_csv(self, path: Path) -> None:
        names = sorted({q for s in self.timeline for q in s.values})
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t_ns", *names])
            for s in self.timeline:
                w.writerow([s.t_ns, *(s.values.get(q, "") for q in names)])

    def describe(self) -> dict:
        return {"url": self.url, "family": self.family, "interval_s": self.interval_s, "scrapes": len(self.timeline),
                "failed_scrapes": self.failures}


def endpoint_sampler(endpoint, transport, *, interval_s: float = 1.0, family: str | None = None,
                     path: str = "/metrics") -> ServerMetricsSampler | None:
    """A sampler of the endpoint's own ``/metrics`` (at the server's root), or None when it has none
    the tool knows (404, not Prometheus text, no known family)."""
    from .endpoint import fetch

    def get() -> str | None:
        resp = fetch(endpoint, transport, "GET", path, root=True)
        if resp.error_kind or resp.status != 200:
            return None
        return resp.body.decode("utf-8", "replace")

    sampler = ServerMetricsSampler(get, interval_s=interval_s, family=family,
                                   url=endpoint.base_url.rsplit(endpoint.base_path, 1)[0] + path)
    if not sampler.scrape_once():
        return None
    return sampler
