"""``agentperf-native run``: parse the options into a :class:`~agentperf_native.runner.RunConfig`,
run it, print the outcome. Every default comes from ``RunConfig`` (tests check the two agree)."""

from __future__ import annotations

import sys

import click

from ..dialects import DIALECTS
from ..durations import format_duration
from ..runner import RunConfig
from ..sim.presets import PRESETS
from . import exit_codes
from .common import DURATION
from .exit_codes import CouldNotRun
from .live import LiveLine

D = RunConfig()

#: Option name (the function parameter) -> RunConfig field, where the two differ.
FIELD_OF = {"duration": "duration_s", "tier_specs": "tiers", "warmup": "warmup_s", "window": "window_s",
            "ramp": "ramp_s", "request_timeout": "request_timeout_s", "tool_delay_cap": "tool_delay_cap_s",
            "stream_idle_timeout": "stream_idle_timeout_s",
            "sim_ttft": "sim_ttft_s", "sim_itl": "sim_itl_s", "start_turn": "random_start_turn",
            "no_cache_isolation": "cache_isolation", "idle_power": "idle_power_s",
            "stop_after_failing": "stop_after_failing_s"}
#: Options whose value is converted before it reaches RunConfig.
CONVERT = {"start_turn": lambda v: v == "random", "no_cache_isolation": lambda v: not v,
           "tier_specs": tuple, "power": lambda v: tuple(v) or ("auto",), "run_nonce": lambda v: _hex(v)}


class ShardsType(click.ParamType):
    """``--shards``: a positive number of processes, or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int):
            return value
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            self.fail(f"{value!r}: write a number of processes (>= 1) or auto", param, ctx)
        return n


def _hex(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value, 16)
    except ValueError:
        raise click.BadParameter(f"{value!r}: write the 16 hex digits of a manifest's run_nonce",
                                 param_hint="--run-nonce") from None
    if not 0 <= n < 1 << 64:
        raise click.BadParameter(f"{value!r}: at most 16 hex digits", param_hint="--run-nonce")
    return n


@click.command(epilog=exit_codes.epilog())
@click.option("--url", default=D.url, help="OpenAI-style base URL (http://host:8000/v1). Default: start the built-in simulator.")
@click.option("--model", default=D.model, help="Model name. Default: the first model the server lists.")
@click.option("--trajectories", type=click.Path(dir_okay=False), default=D.trajectories,
              help="Conversations (JSONL, or any format `trajectories convert` reads). Default: the bundled set.")
@click.option("--concurrency", type=click.IntRange(min=1), default=D.concurrency,
              help="Run one fixed phase at this many agents. Without it: search the capacity of every tier.")
@click.option("--duration", type=DURATION, default=D.duration_s, show_default=True,
              help="With --concurrency: the measured window, e.g. 30s, 10m (after every agent is active).")
@click.option("--tier", "tier_specs", multiple=True, metavar="SPEED:TTFT",
              help="SLO tier: minimum P25 output speed (tok/s) and maximum P95 TTFT (s), e.g. 60:5 (repeatable).")
@click.option("--tiers", "tier_preset", type=click.Choice(["dsv4-pro", "gpt-oss-120b"]), default=D.tier_preset,
              help="A published tier preset (default when no --tier: dsv4-pro).")
@click.option("--profile", type=click.Choice(["quick", "aa"]), default=D.profile, show_default=True,
              help="Window rules: quick (10 s warm-up, 30 s window) or aa (30 s, 10 min, >= 30 trajectories, >= 3 per agent).")
@click.option("--warmup", type=DURATION, default=D.warmup_s,
              help="Time every agent must be active before the window opens (fixed phase: 0 unless given).")
@click.option("--window", type=DURATION, default=D.window_s, help="Minimum steady window per probe.")
@click.option("--min-trajectories", type=click.IntRange(min=0), default=D.min_trajectories,
              help="Trajectories that must complete inside a window.")
@click.option("--min-trajectories-per-agent", type=click.IntRange(min=0), default=D.min_trajectories_per_agent)
@click.option("--start-concurrency", type=click.IntRange(min=1), default=D.start_concurrency, show_default=True)
@click.option("--max-concurrency", type=click.IntRange(min=1), default=D.max_concurrency, show_default=True)
@click.option("--resolution", type=click.FloatRange(0, 1), default=D.resolution, show_default=True,
              help="Stop bisecting when the gap is at most max(1, RESOLUTION x the passing concurrency).")
@click.option("--tokenizer", default=D.tokenizer, show_default=True,
              help="Token-only traces: cl100k_base, o200k_base, o200k_harmony or a tokenizer.json path.")
@click.option("--token-prompts", type=click.Choice(["token_ids", "text"]), default=D.token_prompts, show_default=True,
              help="Token-only traces: token ids on /v1/completions, or text on /v1/chat/completions.")
@click.option("--ramp", type=DURATION, default=D.ramp_s, show_default=True,
              help="Agents arrive evenly over this time instead of all at once.")
@click.option("--out", type=click.Path(file_okay=False), default=D.out, show_default=True, help="Results directory.")
@click.option("--workers", type=click.IntRange(min=1), default=D.workers, help="Engine threads. Default: one per two cores.")
@click.option("--api-key-env", default=D.api_key_env, metavar="NAME",
              help="Name of the environment variable holding the API key (never written to the results).")
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=D.api_key_file,
              help="A file holding the API key (its first line; never written to the results).")
@click.option("--protocol", type=click.Choice(["h1", "h2", "auto"]), default=D.protocol, show_default=True,
              help="HTTP/1.1, HTTP/2 (h2c prior knowledge on http://), or auto (ALPN on https://, else h1).")
@click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False), default=D.ca_file,
              help="PEM file of CAs to trust for https://.")
@click.option("--insecure", is_flag=True, default=D.insecure,
              help="Do not verify the server certificate (self-signed test setups).")
@click.option("--streams-per-connection", type=click.IntRange(min=1), default=D.streams_per_connection,
              show_default=True, help="HTTP/2: agents multiplexed per connection.")
@click.option("--request-timeout", type=DURATION, default=D.request_timeout_s, show_default=True,
              help="Per-request limit.")
@click.option("--stop-after-failing", type=DURATION, default=D.stop_after_failing_s, show_default=True,
              help="Stop early when every request that ended in this long failed and no output arrived (the "
                   "server went away); records are kept, exit code 3. 0: never.")
@click.option("--stream-idle-timeout", type=DURATION, default=D.stream_idle_timeout_s, show_default=True,
              help="A response that has begun and then sends nothing for this long fails as idle_timeout "
                   "(a server stopped mid-stream); 0 disables it.")
@click.option("--seed", type=int, default=D.seed, show_default=True,
              help="Seeds every agent's random stream (conversations, start turns, tool delays).")
@click.option("--run-nonce", default=None, metavar="HEX",
              help="Replay a run's cache-isolation prefixes exactly (its manifest's run_nonce). Default: fresh "
                   "from the OS, so a repeated run never meets its own prefix cache.")
@click.option("--start-turn", type=click.Choice(["random", "first"]), default="random" if D.random_start_turn else "first",
              show_default=True, help="Where each agent starts its first conversation.")
@click.option("--no-cache-isolation", is_flag=True, default=not D.cache_isolation,
              help="Do not prefix each agent's prompts with a random tag.")
@click.option("--share-system-prompt", is_flag=True, default=D.share_system_prompt,
              help="Keep the system prompt and tools shared across agents (isolation prefix after them).")
@click.option("--history", type=click.Choice(["recorded", "generated"]), default=D.history, show_default=True,
              help="Send the recorded assistant turns, or feed back what the server generated.")
@click.option("--output-length", default=D.output_length, show_default=True, metavar="exact|recorded|fixed:N",
              help="exact: max_tokens = min_tokens = recorded + ignore_eos; recorded: cap only; fixed:N.")
@click.option("--tool-delay", default=D.tool_delay, show_default=True, metavar="SPEC",
              help="recorded, none, fixed:S, uniform:LO,HI or lognormal:MEDIAN,SIGMA (seconds), drawn by each agent.")
@click.option("--tool-delay-cap", type=DURATION, default=D.tool_delay_cap_s, help="Upper bound on any tool delay.")
@click.option("--sim-ttft", type=DURATION, default=D.sim_ttft_s, show_default=True,
              help="Built-in server (null preset): time to first token.")
@click.option("--sim-itl", type=DURATION, default=D.sim_itl_s, show_default=True,
              help="Built-in server (null preset): gap between tokens.")
@click.option("--power", multiple=True, default=D.power, show_default=True,
              metavar="auto|nvml[:DEV,..]|amdsmi|prometheus:URL|constant:W|none",
              help="Accelerator power source (prometheus:URL repeatable, one per node). auto: the simulator's when "
                   "embedded, else NVML/AMD-SMI when a GPU is visible, else none.")
@click.option("--accelerators", type=click.IntRange(min=1), default=D.accelerators,
              help="Accelerators serving the endpoint. Default: the count the power source sees.")
@click.option("--accelerators-per-system", type=click.IntRange(min=1), default=D.accelerators_per_system,
              help="Accelerators per system (e.g. 8 for an HGX node, 72 for an NVL72 rack): agents per system.")
@click.option("--system-name", default=D.system_name, help="What the system is, for the manifest (e.g. 'HGX H200').")
@click.option("--price-per-hour", type=click.FloatRange(min=0, min_open=True), default=D.price_per_hour,
              help="Price of the system under test per hour ($): agents per $/h.")
@click.option("--idle-power", "idle_power", type=DURATION, default=D.idle_power_s, show_default=True,
              help="Measure idle power this long before the first probe (0: skip).")
@click.option("--sim-preset", type=click.Choice(list(PRESETS)), default=D.sim_preset,
              help="Built-in server preset. Default: demo (illustrative, scaled for a five-minute search), or null when --sim-ttft or "
                   "--sim-itl is given.")
@click.option("--dialect", type=click.Choice(["auto", *DIALECTS]),
              default=D.dialect, show_default=True,
              help="The server's dialect (how exact lengths are forced, whether usage must be asked for, ...). "
                   "auto: the pre-flight probes the server.")
@click.option("--context-overflow", type=click.Choice(["skip", "truncate", "refuse"]), default=D.context_overflow,
              show_default=True,
              help="Conversations needing more context than the server's limit (read before measuring): skip them, "
                   "truncate them to the turns that fit, or refuse to run.")
@click.option("--shards", type=ShardsType(), default=D.shards, show_default=True,
              help="Engine processes on this machine, the agents split over them (one process opens about 20,000 "
                   "sockets at most). auto: enough that none holds more than 16,000 connections. 1: in-process.")
@click.option("--ray", default=D.ray, metavar="ADDRESS|auto",
              help="Run the shards as Ray actors on the cluster at ADDRESS (pip install 'agentperf-native[ray]').")
@click.option("--shards-per-node", type=click.IntRange(min=1), default=D.shards_per_node, show_default=True,
              help="With --ray: shards on each node.")
@click.option("--on-shard-loss", type=click.Choice(["continue", "stop"]), default=D.on_shard_loss, show_default=True,
              help="A shard that dies: the probe it hit is not steady and the run goes on with the others, or the "
                   "run stops (every record drained so far is kept).")
def run(**options) -> None:
    """Find the largest concurrency each SLO tier holds (or, with --concurrency, run one phase); write results."""
    from ..runner import RunError, execute
    from ..workload import WorkloadError

    given = click.get_current_context().get_parameter_source
    if options["sim_preset"] is None and any(
            given(n) is not click.core.ParameterSource.DEFAULT for n in ("sim_ttft", "sim_itl")):
        options["sim_preset"] = "null"
    cfg = config_from_options(options)
    check_values(cfg)
    display = LiveLine(cfg.duration_s if cfg.concurrency is not None else None)
    try:
        try:
            path, summary = execute(cfg, sys.argv, display=display)
        except (RunError, WorkloadError, ValueError) as e:
            raise CouldNotRun(str(e)) from None
        if summary["mode"] == "phase":
            _print_phase(summary)
        from ..report import report

        table, _files = report(path)
    except KeyboardInterrupt:  # SIGINT outside the run's own handling (pre-flight, report)
        click.echo(f"\ninterrupted: stopped at once; the records written so far, if any, are in {cfg.out}",
                   err=True)
        sys.exit(exit_codes.INTERRUPTED)
    click.echo(table)
    click.echo(f"results: {path}/summary.json, report: {path}/report.html")
    sys.exit(exit_code(summary))


def exit_code(summary: dict) -> int:
    """The exit code a finished run's summary earns (``exit_codes.TABLE``); says why on stderr."""
    if summary["interrupted"]:
        return exit_codes.INTERRUPTED
    problems = summary["validity"].get("problems", [])
    if summary.get("stopped_early") or not summary["validity"].get("valid", True):
        click.echo(f"the result is not valid (exit code {exit_codes.INVALID}): " + "; ".join(problems), err=True)
        return exit_codes.INVALID
    return exit_codes.OK


def check_values(cfg: RunConfig) -> None:
    """Option values the types cannot check, checked before anything starts (a usage error, exit 2)."""
    from ..endpoint import Endpoint
    from ..power import parse_power_spec
    from ..tiers import resolve_tiers
    from ..workload import RequestPolicy, tool_delay_policy

    checks = (("--url", lambda: cfg.url is None or Endpoint.parse(cfg.url)),
              ("--tier", lambda: resolve_tiers(cfg.tiers, cfg.tier_preset)),
              ("--output-length", lambda: RequestPolicy(output=cfg.output_length)),
              ("--tool-delay", lambda: tool_delay_policy(cfg.tool_delay)),
              ("--power", lambda: parse_power_spec(list(cfg.power))))
    for hint, check in checks:
        try:
            check()
        except ValueError as e:
            if str(e).startswith(hint):  # the message names the option already
                raise click.UsageError(str(e)) from None
            raise click.BadParameter(str(e), param_hint=hint) from None
    if cfg.api_key_env and cfg.api_key_file:
        raise click.UsageError("give the API key one way: --api-key-env or --api-key-file")
    if cfg.concurrency is None and cfg.start_concurrency > cfg.max_concurrency:
        raise click.BadParameter(f"{cfg.start_concurrency} is above --max-concurrency {cfg.max_concurrency}",
                                 param_hint="--start-concurrency")


def config_from_options(options: dict) -> RunConfig:
    cfg = RunConfig()
    for name, value in options.items():
        field = FIELD_OF.get(name, name)
        if not hasattr(cfg, field):
            raise AssertionError(f"run option {name!r} has no RunConfig field")
        setattr(cfg, field, CONVERT[name](value) if name in CONVERT else value)
    return cfg


def _print_phase(summary: dict) -> None:
    p = summary.get("phase") or {}
    if not p:
        return
    click.echo(f"concurrency {p['concurrency']}, window {format_duration(p['duration_s'])}: {p['requests']} requests, "
               f"{p['requests_failed']} failed, {p['output_tokens']} output tokens "
               f"({p['throughput_output_tps']:.0f} tok/s)")
    if p["requests_ok"]:
        t, v = p["ttft_s"], p["output_speed_tps"]
        click.echo(f"TTFT p50 {t['p50']:.3f}s p95 {t['p95']:.3f}s p99 {t['p99']:.3f}s; output speed "
                   f"p25 {v['p25'] or 0:.1f} p50 {v['p50'] or 0:.1f} tok/s; SLO view (failures as violations): "
                   f"P95 TTFT {_s(p['slo_ttft_p95_s'])}, P25 speed {_s(p['slo_output_speed_p25_tps'])}")
    if p.get("not_steady_reason"):
        click.echo(f"note: {p['not_steady_reason']}")
    if p["requests_failed"]:
        click.echo("note: failures: " + ", ".join(f"{k} {n}" for k, n in p["failures_by_kind"].items()))


def _s(x) -> str:
    return "-" if x is None else f"{x:.3g}"
