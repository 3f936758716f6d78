"""The ``run`` job: endpoint (or the embedded simulator), workload, probes, results directory.

One path for both modes: a capacity search (``run``) and a fixed phase (``run --concurrency N``)
both run :class:`~agentperf_native.probe.ProbeRunner` probes on the orchestration loop, write the
same probe records to ``phases.json`` (the probe in progress included) and ``summary.json`` last.
SIGINT / SIGTERM stop at the next tick: every record is drained and written, and the summary says
the run is incomplete.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import dialects, limits, preflight
from .failures import FirstFailures
from .failures import describe as describe_failures
from .endpoint import Endpoint, Transport, base_url_hint, list_models, redact, redact_all
from .engine import Engine, now_ns
from .orchestrate import Interrupted, Orchestrator, run_loop
from .probe import PhaseRules, ProbeRunner, ProbeState
from .results import Probe, RecordFile, Summary, base_manifest, validity_of, write_json
from .results.records import dtype_description
from .search import search
from .tiers import Tier, resolve_tiers
from .shards import ShardedEngine, ShardStartError, WorkloadRecipe
from .shards import run as shard_run
from .sim.server import embedded_server
from .trajectories import FORMATS, SourceError, format_hint
from .workload import RequestPolicy, bundled_path, load_conversations


@dataclass
class RunConfig:
    url: str | None = None  # None: start the built-in simulator
    model: str | None = None
    trajectories: str | None = None  # None: the bundled default set
    concurrency: int | None = None  # None: the capacity search; N: one fixed phase of N agents
    duration_s: float = 60.0
    ramp_s: float = 0.0  # agents arrive evenly over this time (0: all at once)
    out: str = "results"
    workers: int | None = None
    api_key_env: str | None = None  # the API key: from this environment variable, or
    api_key_file: str | None = None  # from this file's first line (never from the command line)
    request_timeout_s: float = 600.0
    stream_idle_timeout_s: float = 60.0  # a begun response silent this long fails as idle_timeout (0: off)
    seed: int = 1
    run_nonce: int | None = None  # None: from the OS; mixed into cache-isolation prefixes (replays: set it)
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
    power: tuple[str, ...] = ("auto",)  # --power sources (prometheus:URL may repeat)
    accelerators: int | None = None  # None: the count the power source sees
    accelerators_per_system: int | None = None
    system_name: str | None = None
    price_per_hour: float | None = None  # $ per hour of the system under test (all its accelerators)
    idle_power_s: float = 3.0  # idle power measured for this long before the first probe
    sim_preset: str | None = None  # None: server.DEFAULT_EMBEDDED_PRESET; "null" uses sim_ttft_s / sim_itl_s
    dialect: str = "auto"  # the server's dialect (dialects.DIALECTS), "auto": the pre-flight probes it
    context_overflow: str = "skip"  # conversations beyond the server's context limit: skip | truncate | refuse
    stop_after_failing_s: float = 30.0  # stop early when every request of this long failed (0: never)
    shards: int | str = 1  # engine processes on this machine ("auto": <= 16,000 connections each); 1: in-process
    ray: str | None = None  # a Ray cluster's address (or "auto"): one shard per node (shards_per_node)
    shards_per_node: int = 1
    on_shard_loss: str = "continue"  # a shard that dies: "continue" with the others, or "stop" the run


class RunError(RuntimeError):
    """A run could not start; the message says what to do."""


def _api_key(cfg: RunConfig) -> str | None:
    """The API key from ``--api-key-env`` or ``--api-key-file``; never from the command line, so it
    is in no shell history, process list or manifest."""
    if cfg.api_key_file:
        try:
            lines = Path(cfg.api_key_file).read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise RunError(f"--api-key-file {cfg.api_key_file}: cannot read it "
                           f"({getattr(e, 'strerror', None) or e}); pass a readable text file") from None
        if not lines:
            raise RunError(f"--api-key-file {cfg.api_key_file} is empty; write the key on its first line")
        return lines[0].strip()
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
    engine: Engine | ShardedEngine
    manifest: dict
    records: RecordFile
    origin_ns: int
    sim_metrics_url: str | None = None
    transport: Transport | None = None
    first_failures: FirstFailures = dataclasses.field(default_factory=FirstFailures)
    secrets: tuple[str, ...] = ()  # the API key: redacted from every file written

    def save(self, name: str, obj: object) -> None:
        """Writes a JSON file of the results directory, credentials redacted."""
        _save(self.out, name, obj, self.secrets)


def _save(out: Path, name: str, obj: object, secrets: tuple[str, ...]) -> None:
    write_json(out / name, redact_all(obj, secrets))


@contextmanager
def prepared(cfg: RunConfig, command: list[str], log: Callable[[str], None],
             api_key: str | None = None) -> Iterator[RunContext]:
    """Sets up a run: the endpoint (or the embedded simulator), pre-flight, workload, engine, manifest.
    The results directory is created last, so a run that cannot start leaves none behind."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: a file of that name exists; pass a folder for the results")
    _check_power_spec(cfg)
    path = Path(cfg.trajectories) if cfg.trajectories else bundled_path()
    try:
        conversations = load_conversations(path)
    except SourceError as e:
        raise RunError(format_hint(e, f"if it is of another format, name it: agentperf-native trajectories convert "
                                      f"{path} --format FORMAT -o converted.jsonl (FORMAT: one of {', '.join(FORMATS)}), then "
                                      "--trajectories converted.jsonl"))

    with ExitStack() as stack:
        server_info: dict = {}
        notes: list[str] = []
        sim_metrics_url = None
        if cfg.url is None:
            sim = stack.enter_context(embedded_server(cfg.sim_preset, ttft_s=cfg.sim_ttft_s, itl_s=cfg.sim_itl_s,
                                                      seed=cfg.seed))
            endpoint = Endpoint.parse(sim.url)
            model = cfg.model or sim.model
            server_info = sim.describe()
            sim_metrics_url = sim.url.rsplit("/v1", 1)[0] + "/metrics"
            log(f"no --url: started the built-in simulated server ({server_info['preset']} preset) at {sim.url}")
        else:
            endpoint = Endpoint.parse(cfg.url)
            if redact(cfg.url) != cfg.url:
                log("note: the credentials in --url are not sent (nor written anywhere); pass an API key with "
                    "--api-key-env or --api-key-file")
        transport = Transport(protocol=cfg.protocol, api_key=api_key, ca_file=cfg.ca_file, insecure=cfg.insecure)
        if cfg.url is not None:
            try:
                models, listing, note = list_models(endpoint, transport)
            except ConnectionError as e:
                raise RunError(str(e)) from None
            if cfg.model is None:
                if not models:
                    raise RunError(f"{note or f'{endpoint.base_url}/models lists no model'}; "
                                   f"{base_url_hint(endpoint)}, or pass --model when the server lists no models")
                model = models[0]
            else:
                model = cfg.model
                if models and model not in models:
                    raise RunError(f"model {model!r} is not served at {endpoint.base_url} (it lists: "
                                   f"{', '.join(models)}); pass one of those to --model")
                if note:
                    notes.append(f"{note}; /v1/models is optional with --model: using {model!r}")
                    log(f"note: {notes[-1]}")
            server_info = {"kind": "external", "models": models, "listing": listing.get("data", [])[:8]}
        listed = [m for m in server_info.get("listing", []) if isinstance(m, dict)]

        token_only = any(c.turns and c.turns[0].hash_ids is not None for c in conversations)
        pre = None
        chosen = dialects.OPENAI if cfg.dialect == "auto" else dialects.get(cfg.dialect)
        if not token_only:
            pre = preflight.check(endpoint, model, transport, dialect=cfg.dialect, output=cfg.output_length,
                                  listing=listed)
            if pre.ok and pre.attempts:
                notes.append(f"pre-flight needed {len(pre.attempts) + 1} attempts: " + "; ".join(pre.attempts))
                log(f"note: {notes[-1]}")
            if not pre.ok:
                raise RunError(f"pre-flight failed: {pre.problem}")
            if not pre.usage_reported:
                log("pre-flight: the server sends no usage in streams; output tokens will be estimated from events "
                    "(flagged tokens_estimated)")
            chosen = pre.chosen or chosen
            log(f"pre-flight: dialect {chosen.name} ({chosen.title}; {pre.dialect_source}), exact lengths via "
                f"{chosen.exact_length}, usage {chosen.usage}")
            if cfg.output_length != "recorded" and not pre.honours_exact_length:
                if chosen.exact_length == "none":
                    raise RunError(f"pre-flight: {chosen.exact_refusal()} (tried: "
                                   f"{_tried(pre)})")
                raise RunError(f"pre-flight: asked for exactly {pre.asked_tokens} tokens ({chosen.exact_length}), got "
                               f"{pre.completion_tokens}: this server does not honour exact output lengths; use "
                               "--output-length recorded")
            if pre.usage_reported and not pre.cached_tokens_reported:
                note = chosen.cached_tokens_note()
                if note:
                    notes.append(note)
                    log(f"note: {note}")
        context = _context_plan(cfg, endpoint, transport, model, listed, conversations, log)
        if context.overflowing:
            notes.append(context.message())
            log(f"note: {notes[-1]}")
            if cfg.context_overflow == "refuse":
                raise RunError(f"{context.message()}; use --context-overflow skip or truncate, or a server with a "
                               "longer context")
            conversations = limits.apply(conversations, context)
            if not conversations:
                raise RunError(f"{context.message()}, and no conversation fits: nothing to run")
        policy = RequestPolicy(history=cfg.history, output=cfg.output_length, tool_delay=cfg.tool_delay,
                               tool_delay_cap_s=cfg.tool_delay_cap_s, share_system_prompt=cfg.share_system_prompt,
                               seed=cfg.seed, exact_method=chosen.exact_length)
        recipe = WorkloadRecipe(conversations, model=model, policy=policy, base_path=endpoint.base_path,
                                tokenizer=cfg.tokenizer if token_only else None, token_prompts=cfg.token_prompts,
                                include_usage=chosen.request_usage)
        workload = recipe.encode()
        run_nonce = cfg.run_nonce if cfg.run_nonce is not None else int.from_bytes(os.urandom(8), "little")
        manifest = base_manifest(command, {k: v for k, v in dataclasses.asdict(cfg).items()})
        manifest.update({
            "endpoint": endpoint.base_url, "model": model, "server": server_info,
            "preflight": pre.to_dict() if pre else None,
            "dialect": chosen.to_dict(),
            "context": context.to_dict(),
            "workload": {"path": str(path), "conversations": len(conversations), "sha256": workload.digest,
                         "requests_per_pass": workload.requests_per_pass,
                         "turns_per_conversation": [len(c.turns) for c in conversations]},
            "started_unix_s": time.time(),
            "run_nonce": f"{run_nonce:016x}",
            "notes": notes,
            "clock": "CLOCK_MONOTONIC ns (records, windows); time_origin_ns is the run's origin",
            "records": dtype_description(),
        })
        spawn = cfg.ramp_s / cfg.concurrency if cfg.concurrency else 0.0
        try:
            engine = shard_run.build_engine(
                endpoint, recipe, workload, shards=cfg.shards, ray_address=cfg.ray, per_node=cfg.shards_per_node,
                peak_agents=cfg.concurrency or cfg.max_concurrency, log=log, workers=cfg.workers, api_key=api_key,
                request_timeout_s=cfg.request_timeout_s,
                stream_idle_timeout_s=cfg.stream_idle_timeout_s, seed=cfg.seed, random_start_turn=cfg.random_start_turn,
                cache_isolation=cfg.cache_isolation, spawn_interval_s=spawn, protocol=cfg.protocol,
                ca_file=cfg.ca_file, insecure=cfg.insecure, streams_per_connection=cfg.streams_per_connection,
                run_nonce=run_nonce)
        except ShardStartError as e:
            raise RunError(str(e)) from None
        if isinstance(engine, ShardedEngine):
            stack.callback(engine.close)
            manifest["shards"] = engine.describe()
        stack.callback(engine.stop)
        origin = now_ns()
        manifest["time_origin_ns"] = origin
        manifest["engine_workers"] = engine.workers
        secrets = (api_key,) if api_key else ()
        _open_results_dir(out)  # only now: a run that could not start leaves no directory behind
        _save(out, "manifest.json", manifest, secrets)
        records = RecordFile(out / "requests.bin")
        stack.callback(records.close)
        yield RunContext(out, endpoint, model, conversations, workload, engine, manifest, records, origin,
                         sim_metrics_url, transport=transport, secrets=secrets)


def _check_power_spec(cfg: RunConfig) -> None:
    from .power import parse_power_spec

    try:
        parse_power_spec(list(cfg.power))
    except ValueError as e:
        raise RunError(str(e)) from None  # the message names --power


def _open_results_dir(out: Path) -> None:
    """Creates the results directory and removes a previous run's files: summary.json's presence
    must mean *this* run finished."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("summary.json", "phases.json", "requests.bin"):
            (out / stale).unlink(missing_ok=True)
    except OSError as e:
        raise RunError(f"cannot write the results directory {out}: {e.strerror}; pass another --out") from None


def _context_plan(cfg: RunConfig, endpoint: Endpoint, transport: Transport, model: str, listed: list[dict],
                  conversations: list, log: Callable[[str], None]) -> limits.ContextPlan:
    """The server's context limit and the conversations that would overflow it, before measuring."""
    limit, source = limits.read_limit(endpoint, transport, model, listed)
    count, counted_by = (None, "")
    if limit is not None:
        count, counted_by = limits.server_counter(endpoint, transport, model)
        if count is None:
            count, counted_by = limits.estimate_counter(cfg.tokenizer)
        log(f"context limit: {limit} tokens ({source}); counting each conversation's largest request by "
            f"{counted_by}")
    lengths = RequestPolicy(output=cfg.output_length)
    return limits.plan(conversations, limit, source, count or (lambda c, k: 0), counted_by,
                       lambda c, k: lengths.lengths(c.turns[k].output_tokens)[0], cfg.context_overflow)


def _tried(pre) -> str:
    """What the pre-flight saw for each exact-length field, e.g. ``ignore_eos: HTTP 422``."""
    out = []
    for key in ("ignore_eos", "min_tokens", "generation_config"):
        p = pre.probes.get(key)
        if p:
            out.append(f"{key}: " + (f"{p['completion_tokens']} of {pre.asked_tokens} tokens" if p["accepted"]
                                     else f"HTTP {p['status']} {p['detail'][:80]}".strip()))
    return "; ".join(out) or "nothing"


def rules_of(cfg: RunConfig) -> PhaseRules:
    """The window rules: a fixed phase's (``--concurrency``) or the search profile's, with overrides."""
    if cfg.concurrency is not None:
        return PhaseRules.fixed(cfg.duration_s, warmup_s=cfg.warmup_s or 0.0, drain_timeout_s=cfg.request_timeout_s)
    rules = PhaseRules.aa() if cfg.profile == "aa" else PhaseRules()
    for name in ("warmup_s", "window_s", "min_trajectories", "min_trajectories_per_agent"):
        value = getattr(cfg, name)
        if value is not None:
            setattr(rules, name, value)
    rules.drain_timeout_s = cfg.request_timeout_s
    return rules


class Display:
    """What a front end (the CLI) shows; every method is optional."""

    def start(self, runner: ProbeRunner, ctx: RunContext) -> None: ...
    def tick(self, state: ProbeState, snap, now_ns: int) -> None: ...
    def probe_done(self, probe: Probe) -> None: ...
    def log(self, line: str) -> None: print(line, file=sys.stderr)


def execute(cfg: RunConfig, command: list[str], display: Display | None = None) -> tuple[Path, dict]:
    """Runs ``cfg`` (a fixed phase when ``cfg.concurrency`` is set, else the capacity search) and
    writes the results directory. Returns its path and the summary (as written)."""
    api_key = _api_key(cfg)
    secrets = (api_key,) if api_key else ()
    display = _Redacting(display or Display(), secrets)
    tiers: list[Tier] = [] if cfg.concurrency is not None else resolve_tiers(cfg.tiers, cfg.tier_preset)
    rules = rules_of(cfg)
    try:
        with prepared(cfg, command, display.log, api_key) as ctx:
            ctx.manifest["mode"] = "phase" if cfg.concurrency is not None else "search"
            ctx.manifest["config"]["tiers"] = [dataclasses.asdict(t) for t in tiers]
            ctx.manifest["rules"] = dataclasses.asdict(rules)
            ctx.save("manifest.json", ctx.manifest)
            orch = Orchestrator(ctx.engine, sink=ctx.records, stop_after_failing_s=cfg.stop_after_failing_s)
            orch.listeners.append(ctx.first_failures)
            shard_run.watch_losses(ctx.engine, cfg.on_shard_loss, display.log, orch.interrupt)
            summary = run_loop(lambda: _run(cfg, ctx, orch, tiers, rules, display), on_signal=orch.interrupt)
    except (RunError, ValueError) as e:  # a server's answer in the message may echo the URL or the key
        e.args = (redact(str(e), secrets),)
        raise
    return ctx.out, redact_all(summary, secrets)


class _Redacting(Display):
    """A display whose log lines have credentials redacted."""

    def __init__(self, inner: Display, secrets: tuple[str, ...]) -> None:
        self.inner, self.secrets = inner, secrets

    def start(self, runner: ProbeRunner, ctx: RunContext) -> None:
        self.inner.start(runner, ctx)

    def tick(self, state: ProbeState, snap, now_ns: int) -> None:
        self.inner.tick(state, snap, now_ns)

    def probe_done(self, probe: Probe) -> None:
        self.inner.probe_done(probe)

    def log(self, line: str) -> None:
        self.inner.log(redact(line, self.secrets))


async def _run(cfg: RunConfig, ctx: RunContext, orch: Orchestrator, tiers: list[Tier], rules: PhaseRules,
               display: Display) -> dict:
    turns = [len(c.turns) for c in ctx.conversations]
    async with orch:
        power = await _start_power(cfg, ctx, orch, display)
        if True:
            def save(_probe: Probe) -> None:
                ctx.save("phases.json", {"probes": [p.to_dict() for p in _probes_with_current(runner)]})

            metrics = _start_server_metrics(ctx, orch, display)
            runner = ProbeRunner(orch, tiers, rules, turns, origin_ns=ctx.origin_ns, on_update=save,
                                 power=power.sampler if power else None, server_metrics=metrics)
            display.start(runner, ctx)
            orch.spawn(_live(orch, runner, display), name="live line")
            interrupted = False
            if cfg.concurrency is not None:
                try:
                    probe = await runner.run(cfg.concurrency, "fixed")
                    display.probe_done(probe)
                except Interrupted as e:
                    interrupted = True
                    stop_reason = e.reason
                else:
                    stop_reason = "phase complete"
                tier_rows: list[dict] = []
            else:
                result = await search(runner, start=cfg.start_concurrency, max_concurrency=cfg.max_concurrency,
                                      resolution=cfg.resolution, on_probe=display.probe_done)
                interrupted, stop_reason = result.interrupted, result.stop_reason
                tier_rows = [t.to_dict() for t in result.tiers]
            stopped_early = orch.stopped_early
            if stopped_early:
                interrupted = False  # stopped by the tool, not by the user: the summary says why
                stop_reason = stopped_early
                display.log(f"error: {stopped_early}")
            ctx.engine.stop()
            orch.drain()
            ctx.records.flush()
            probes = runner.probes
            power_doc = await power.finish(ctx) if power else None
            validity = validity_of(probes, interrupted=interrupted, stopped_early=stopped_early)
            notes = list(ctx.manifest.get("notes", []))
            shard_run.finish(ctx.engine, ctx.manifest, validity, notes)
            ctx.save("manifest.json", ctx.manifest)
            if metrics is not None:
                metrics.write_csv(ctx.out / "server_metrics.csv")
            if ctx.first_failures.first:
                for line in describe_failures(ctx.first_failures.explain(ctx.engine)):
                    notes.append(line)
                    display.log(f"note: {line}")
            if power:
                accelerators = _normalise(cfg, tier_rows, probes, power.accelerators, validity)
            else:
                accelerators = cfg.accelerators
            save(None)  # type: ignore[arg-type]  # the final probe records (energy per token included)
            if interrupted and orch.interrupted:
                notes.append(f"stopped by {orch.interrupted}")
            if ctx.records.error:
                notes.append(f"writing requests.bin failed: {ctx.records.error}")
            summary = Summary(mode=ctx.manifest["mode"], complete=not (interrupted or stopped_early),
                              interrupted=interrupted, stopped_early=stopped_early,
                              endpoint=ctx.endpoint.base_url, model=ctx.model, stop_reason=stop_reason,
                              tiers=tier_rows, probes=len(probes), validity=dataclasses.asdict(validity),
                              records_written=ctx.records.count, accelerators=accelerators, power=power_doc,
                              phase=probes[0].to_dict() if cfg.concurrency is not None and probes else None,
                              notes=notes).to_dict()
            ctx.save("summary.json", summary)
            return summary


def _start_server_metrics(ctx: RunContext, orch: Orchestrator, display: Display):
    """Scrapes the server's own /metrics beside every probe, when it has one the tool knows."""
    from .server_metrics import endpoint_sampler

    sampler = endpoint_sampler(ctx.endpoint, ctx.transport or Transport())
    if sampler is None:
        ctx.manifest["server_metrics"] = None
        display.log("note: the server has no /metrics the tool knows (vLLM, SGLang, llama.cpp --metrics, the "
                    "simulator): probes carry no server metrics")
    else:
        ctx.manifest["server_metrics"] = sampler.describe()
        orch.spawn(sampler.run(), name="server metrics")
    ctx.save("manifest.json", ctx.manifest)
    return sampler


def _probes_with_current(runner: ProbeRunner) -> list[Probe]:
    probes = list(runner.probes)
    cur = runner.current
    if cur is not None and cur.probe.state == "measuring" and cur.probe not in probes:
        probes.append(cur.probe)
    return probes


async def _live(orch: Orchestrator, runner: ProbeRunner, display: Display) -> None:
    while True:
        try:
            snap = await orch.tick()
        except Interrupted:
            return
        if runner.current is not None:
            display.tick(runner.current, snap, now_ns())


class _Power:
    """The run's power sampler, as a task of the orchestration loop."""

    def __init__(self, sampler, reason: str, orch: Orchestrator) -> None:
        import asyncio

        self.sampler = sampler
        self.reason = reason
        self.stop = asyncio.Event()
        self.task = orch.spawn(sampler.run(self.stop), name="power")
        self.idle: dict | None = None

    @property
    def accelerators(self) -> int:
        return len(self.sampler.devices)

    async def finish(self, ctx: RunContext) -> dict:
        self.stop.set()
        try:
            await self.task
        except Exception as e:  # noqa: BLE001 - a sampler that broke mid-run: keep what it measured
            self.sampler.notes.append(f"the sampler stopped: {e}")
        self.sampler.write_timeline(ctx.out / "power.csv")
        return {**self.sampler.to_dict(), "chosen": self.reason, "idle": self.idle}


async def _start_power(cfg: RunConfig, ctx: RunContext, orch: Orchestrator, display: Display) -> _Power | None:
    """Starts ``--power``'s sampler and measures idle power before the first probe; None when no
    power is measured (said in one line)."""
    from .power import PowerUnavailable, choose_sampler

    try:
        choice = choose_sampler(list(cfg.power), sim_metrics_url=ctx.sim_metrics_url, accelerators=cfg.accelerators)
    except ValueError as e:
        raise RunError(str(e)) from None
    display.log(choice.reason)
    if choice.sampler is None:
        return None
    try:
        choice.sampler.open()
    except PowerUnavailable as e:
        display.log(f"power: {e}; no power measured")
        return None
    power = _Power(choice.sampler, choice.reason, orch)
    if cfg.idle_power_s > 0:
        t0 = now_ns()
        display.log(f"power: measuring idle power for {cfg.idle_power_s:g}s before the first probe")
        while now_ns() - t0 < cfg.idle_power_s * 1e9:
            await orch.tick()
        window = await power.sampler.window_settled(t0, now_ns())
        power.idle = {"mean_w": window.mean_w, "method": window.method, "coverage": window.coverage,
                      "duration_s": window.duration_s}
    return power


def _normalise(cfg: RunConfig, tier_rows: list[dict], probes: list[Probe], seen: int, validity) -> int | None:
    """Agents per accelerator / system / MW / $·h for each tier, from the probe at its maximum."""
    from .power import agents_per_accelerator, agents_per_dollar_hour, agents_per_mw, agents_per_system, mean_power_w

    accelerators = cfg.accelerators or seen or None
    by_index = {p.index: p for p in probes}
    for t in tier_rows:
        p = by_index.get(t["probe_index"]) if t.get("probe_index") is not None else None
        n = t["max_agents"]
        window = p.power if p is not None else None
        t["mean_power_w"] = mean_power_w(window) if window else None
        t["agents_per_mw"] = agents_per_mw(n, window) if window else None
        t["agents_per_accelerator"] = agents_per_accelerator(n, accelerators)
        t["agents_per_system"] = agents_per_system(n, accelerators, cfg.accelerators_per_system)
        t["agents_per_dollar_hour"] = agents_per_dollar_hour(n, cfg.price_per_hour)
        if window and window.get("flagged"):
            validity.problems.append(f"tier {t['name']}: power at its maximum is flagged ({window.get('flag_reason')})")
            validity.valid = False
    for p in probes:
        if p.power:
            from .power import energy_per_output_token_j, energy_per_trajectory_j

            p.power["j_per_output_token"] = energy_per_output_token_j(p.power, p.output_tokens)
            p.power["j_per_trajectory"] = energy_per_trajectory_j(p.power, p.trajectories_completed)
    return accelerators
