"""The ``run`` job: endpoint (or the embedded simulator), workload, one phase, results directory."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import preflight
from .endpoint import Endpoint
from .engine import Engine, Snapshot, now_ns
from .phase import PhaseSummary, run_phase
from .results import RecordWriter, base_manifest, write_json
from .sim.server import embedded_server
from .workload import RequestPolicy, bundled_path, encode, load_conversations


@dataclass
class RunConfig:
    url: str | None = None  # None: start the built-in simulator
    model: str | None = None
    trajectories: str | None = None  # None: the bundled default set
    concurrency: int | None = 16  # None: the capacity search
    duration_s: float = 60.0
    ramp_s: float = 0.0  # agents arrive evenly over this time (0: all at once)
    out: str = "results"
    workers: int | None = None
    api_key_env: str | None = None
    request_timeout_s: float = 600.0
    seed: int = 1
    random_start_turn: bool = True
    cache_isolation: bool = True
    history: str = "recorded"
    output_length: str = "recorded"
    tool_delay: str = "recorded"
    tool_delay_cap_s: float | None = None
    share_system_prompt: bool = False
    protocol: str = "auto"
    ca_file: str | None = None
    insecure: bool = False
    streams_per_connection: int = 100
    sim_ttft_s: float = 0.2
    sim_itl_s: float = 0.01
    tokenizer: str = "cl100k_base"  # token-only traces: how prompts are made
    token_prompts: str = "token_ids"  # token-only traces: "token_ids" (/v1/completions) or "text"
    tiers: tuple[str, ...] = ()  # SPEED:TTFT specs
    tier_preset: str | None = None
    profile: str = "quick"  # "quick" or "aa" (AA-AgentPerf window rules)
    warmup_s: float | None = None  # None: the profile's
    window_s: float | None = None
    min_trajectories: int | None = None
    min_trajectories_per_agent: int | None = None
    start_concurrency: int = 1
    max_concurrency: int = 1024
    resolution: float = 0.0  # bisection stops when the gap <= max(1, resolution × last pass)
    sim_preset: str | None = None  # None: server.DEFAULT_EMBEDDED_PRESET; "null" uses sim_ttft_s / sim_itl_s


class RunError(RuntimeError):
    """A run could not start; the message says what to do."""


def _api_key(cfg: RunConfig) -> str | None:
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise RunError(f"environment variable {cfg.api_key_env} (from --api-key-env) is not set or empty")
    return key


@dataclass
class RunContext:
    """What a run's setup produced: endpoint, workload, engine, results files."""

    out: Path
    endpoint: Endpoint
    model: str
    conversations: list
    workload: object
    engine: Engine
    manifest: dict
    writer: RecordWriter
    origin_ns: int


@contextmanager
def prepared(cfg: RunConfig, command: list[str], log: Callable[[str], None]) -> Iterator[RunContext]:
    """Sets up a run: the endpoint (or the embedded simulator), pre-flight, workload, engine, manifest."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "phases.json"):
        (out / stale).unlink(missing_ok=True)  # summary.json's presence must mean *this* run finished
    api_key = _api_key(cfg)
    path = Path(cfg.trajectories) if cfg.trajectories else bundled_path()
    conversations = load_conversations(path)

    with ExitStack() as stack:
        server_info: dict = {}
        if cfg.url is None:
            sim = stack.enter_context(embedded_server(cfg.sim_preset, ttft_s=cfg.sim_ttft_s, itl_s=cfg.sim_itl_s,
                                                      seed=cfg.seed))
            endpoint = Endpoint.parse(sim.url)
            model = cfg.model or sim.model
            server_info = sim.describe()
            log(f"no --url: started the built-in simulated server ({server_info['preset']} preset) at {sim.url}")
        else:
            endpoint = Endpoint.parse(cfg.url)
            try:
                models = endpoint.list_models(api_key, ca_file=cfg.ca_file, insecure=cfg.insecure)
            except ConnectionError as e:
                raise RunError(str(e)) from e
            if cfg.model is None:
                if not models:
                    raise RunError(f"{endpoint.base_url}/models lists no model; pass --model")
                model = models[0]
            else:
                model = cfg.model
                if models and model not in models:
                    raise RunError(f"model {model!r} is not served at {endpoint.base_url} (it lists: "
                                   f"{', '.join(models)}); pass one of those to --model")
            server_info = {"kind": "external", "models": models}

        token_only = any(c.turns and c.turns[0].hash_ids is not None for c in conversations)
        pre = None
        if not token_only:
            pre = preflight.check(endpoint, model, api_key=api_key, ca_file=cfg.ca_file, insecure=cfg.insecure)
            if not pre.ok:
                raise RunError(f"pre-flight failed: {pre.problem}")
            if not pre.usage_reported:
                log("pre-flight: the server sends no usage in streams; output tokens will be estimated from events "
                    "(flagged tokens_estimated)")
            if cfg.output_length == "exact" and not pre.honours_exact_length:
                raise RunError(f"pre-flight: asked for exactly {pre.asked_tokens} tokens (max_tokens + min_tokens + "
                               f"ignore_eos), got {pre.completion_tokens}: this server does not honour exact output "
                               "lengths; use --output-length recorded")
        tokenizer = None
        if token_only:
            from .trajectories import load_tokenizer

            tokenizer = load_tokenizer(cfg.tokenizer)
        policy = RequestPolicy(history=cfg.history, output=cfg.output_length, tool_delay=cfg.tool_delay,
                               tool_delay_cap_s=cfg.tool_delay_cap_s, share_system_prompt=cfg.share_system_prompt,
                               seed=cfg.seed)
        workload = encode(conversations, model=model, policy=policy, base_path=endpoint.base_path,
                          tokenizer=tokenizer, token_prompts=cfg.token_prompts)
        manifest = base_manifest(command, {k: v for k, v in dataclasses.asdict(cfg).items()})
        manifest.update({
            "endpoint": endpoint.base_url, "model": model, "server": server_info,
            "preflight": pre.to_dict() if pre else None,
            "workload": {"path": str(path), "conversations": len(conversations), "sha256": workload.digest,
                         "requests_per_pass": workload.requests_per_pass},
            "started_unix_s": time.time(),
            "clock": "CLOCK_MONOTONIC ns; requests.csv times are relative to time_origin_ns",
        })
        spawn = cfg.ramp_s / cfg.concurrency if cfg.concurrency else 0.0
        engine = Engine(endpoint, workload, workers=cfg.workers, api_key=api_key,
                        request_timeout_s=cfg.request_timeout_s, seed=cfg.seed,
                        random_start_turn=cfg.random_start_turn, cache_isolation=cfg.cache_isolation,
                        spawn_interval_s=spawn, protocol=cfg.protocol, ca_file=cfg.ca_file, insecure=cfg.insecure,
                        streams_per_connection=cfg.streams_per_connection)
        stack.callback(engine.stop)
        origin = now_ns()
        manifest["time_origin_ns"] = origin
        manifest["engine_workers"] = engine.workers
        write_json(out / "manifest.json", manifest)
        writer = RecordWriter(out / "requests.csv", origin)
        stack.callback(writer.close)
        yield RunContext(out, endpoint, model, conversations, workload, engine, manifest, writer, origin)


def execute(cfg: RunConfig, command: list[str], progress: Callable[[float, Snapshot, str], None] | None = None,
            log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> tuple[Path, PhaseSummary]:
    """One phase at a fixed concurrency (``run --concurrency N``)."""
    with prepared(cfg, command, log) as ctx:
        summary, _ = run_phase(ctx.engine, cfg.concurrency, cfg.duration_s, writer=ctx.writer,
                               drain_timeout_s=cfg.request_timeout_s, progress=progress)
        doc = dataclasses.asdict(summary)
        doc["mode"] = "phase"
        doc["endpoint"], doc["model"] = ctx.endpoint.base_url, ctx.model
        doc["records_written"] = ctx.writer.count
        doc["complete"] = not summary.interrupted
        write_json(ctx.out / "summary.json", doc)
    return ctx.out, summary


def execute_search(cfg: RunConfig, command: list[str], progress=None,
                   log: Callable[[str], None] = lambda s: print(s, file=sys.stderr), on_probe=None):
    """The capacity search (``run`` without --concurrency): phases.json after every probe,
    summary.json last (marked incomplete when interrupted)."""
    from .search import PhaseRules, ProbeRunner, search
    from .tiers import resolve_tiers

    tiers = resolve_tiers(cfg.tiers, cfg.tier_preset)
    rules = PhaseRules.aa() if cfg.profile == "aa" else PhaseRules()
    for name in ("warmup_s", "window_s", "min_trajectories", "min_trajectories_per_agent"):
        value = getattr(cfg, name)
        if value is not None:
            setattr(rules, name, value)
    rules.drain_timeout_s = cfg.request_timeout_s
    with prepared(cfg, command, log) as ctx:
        ctx.manifest["config"]["tiers"] = [dataclasses.asdict(t) for t in tiers]
        ctx.manifest["rules"] = dataclasses.asdict(rules)
        write_json(ctx.out / "manifest.json", ctx.manifest)
        turns = [len(c.turns) for c in ctx.conversations]
        runner = ProbeRunner(ctx.engine, tiers, rules, turns, origin_ns=ctx.origin_ns, writer=ctx.writer,
                             progress=progress)

        def save_probe(probe, result) -> None:
            write_json(ctx.out / "phases.json", {"probes": [p.to_dict() for p in runner.probes]})
            if on_probe:
                on_probe(probe)

        result = search(runner, start=cfg.start_concurrency, max_concurrency=cfg.max_concurrency,
                        resolution=cfg.resolution, on_probe=save_probe)
        write_json(ctx.out / "phases.json", {"probes": [p.to_dict() for p in runner.probes]})
        summary = _search_summary(ctx, result, tiers)
        write_json(ctx.out / "summary.json", summary)
    return ctx.out, summary


def _search_summary(ctx: RunContext, result, tiers) -> dict:
    probes = result.probes
    problems = []
    best = [p for p in probes if p.steady]
    error_rate = max((p.error_rate for p in best), default=0.0)
    if error_rate > 0.01:
        problems.append(f"error rate up to {error_rate:.1%} in a steady window")
    under = sum(p.requests_under_generated for p in probes)
    if under:
        problems.append(f"{under} requests generated fewer tokens than asked")
    overflows = sum(p.context_overflows for p in probes)
    if overflows:
        problems.append(f"{overflows} requests were refused for their length (HTTP 400/413)")
    lateness = max((p.send_lateness_p99_ms or 0.0 for p in probes), default=0.0)
    saturated = lateness > 50.0
    if saturated:
        problems.append(f"client saturation: P99 send lateness {lateness:.0f} ms")
    not_steady = [p for p in probes if not p.steady]
    if not_steady:
        problems.append(f"{len(not_steady)} probe(s) never reached steady state: " +
                        "; ".join(f"c={p.concurrency}: {p.not_steady_reason}" for p in not_steady[:3]))
    if result.interrupted:
        problems.append("the search was interrupted")
    return {
        "complete": not result.interrupted,
        "interrupted": result.interrupted,
        "mode": "search",
        "endpoint": ctx.endpoint.base_url,
        "model": ctx.model,
        "stop_reason": result.stop_reason,
        "tiers": [{**{k: v for k, v in dataclasses.asdict(t).items() if k != "first_fail"},
                   "first_fail": t.first_fail, "agents_per_accelerator": None, "agents_per_mw": None}
                  for t in result.tiers],
        "probes": len(probes),
        "validity": {"valid": not problems, "problems": problems, "error_rate": error_rate,
                     "under_generated": under, "context_overflows": overflows, "client_saturated": saturated,
                     "window_rules_met": not not_steady},
        "accelerators": None,
        "records_written": ctx.writer.count,
    }
