"""The ``agentperf-native`` command: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import signal
import sys
import threading

import click

from .. import __version__
from ..durations import format_duration, parse_duration
from ..engine import Snapshot


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):  # type: ignore[override]
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


DURATION = Duration()


def _fmt_ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.0f}ms"


class ProgressLine:
    """One status line, rewritten in place on a terminal, printed every 10 s otherwise."""

    def __init__(self, total_s: float) -> None:
        self.total_s = total_s
        self.tty = sys.stderr.isatty()
        self.last_print = -1e9

    def __call__(self, elapsed_s: float, snap: Snapshot, stage: str) -> None:
        if not self.tty and elapsed_s - self.last_print < 10:
            return
        self.last_print = elapsed_s
        ttft = snap.ttft_ns
        speed = snap.output_speed_mtps
        failed = f" failed {snap.requests_failed}" if snap.requests_failed else ""
        line = (f"[{elapsed_s:6.1f}s/{format_duration(self.total_s)} {stage}] agents {snap.agents_active}/"
                f"{snap.agents_target} in-flight {snap.requests_in_flight} ok {snap.requests_ok}{failed} "
                f"TTFT p50 {_fmt_ms(ttft.percentile(50) if ttft.count else None)} "
                f"p95 {_fmt_ms(ttft.percentile(95) if ttft.count else None)} "
                f"speed p25 {speed.percentile(25) / 1000 if speed.count else 0:.1f} tok/s")
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentperf-native")
def main() -> None:
    """Replay agent trajectories against an OpenAI-compatible server and measure what it sustains."""


@main.command()
@click.option("--url", default=None, help="OpenAI-style base URL (http://host:8000/v1). Default: start the built-in simulator.")
@click.option("--model", default=None, help="Model name. Default: the first model the server lists.")
@click.option("--trajectories", type=click.Path(dir_okay=False), default=None,
              help="Conversations (JSONL). Default: the bundled set.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Run one phase at this many agents. Without it: search the capacity of every tier.")
@click.option("--duration", type=DURATION, default="60s", show_default=True,
              help="With --concurrency: measured time, e.g. 30s, 10m.")
@click.option("--tier", "tier_specs", multiple=True, metavar="SPEED:TTFT",
              help="SLO tier: minimum P25 output speed (tok/s) and maximum P95 TTFT (s), e.g. 60:5 (repeatable).")
@click.option("--tiers", "tier_preset", type=click.Choice(["dsv4-pro", "gpt-oss-120b"]), default=None,
              help="A published tier preset (default when no --tier: dsv4-pro).")
@click.option("--profile", type=click.Choice(["quick", "aa"]), default="quick", show_default=True,
              help="Window rules: quick (10 s warm-up, 30 s window) or aa (30 s, 10 min, >= 30 trajectories, >= 3 per agent).")
@click.option("--warmup", type=DURATION, default=None, help="Time every agent must be active before the window opens.")
@click.option("--window", type=DURATION, default=None, help="Minimum steady window per probe.")
@click.option("--min-trajectories", type=click.IntRange(min=0), default=None,
              help="Trajectories that must complete inside a window.")
@click.option("--min-trajectories-per-agent", type=click.IntRange(min=0), default=None)
@click.option("--start-concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-concurrency", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--resolution", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Stop bisecting when the gap is at most max(1, RESOLUTION x the passing concurrency).")
@click.option("--tokenizer", default="cl100k_base", show_default=True,
              help="Token-only traces: cl100k_base, o200k_base, o200k_harmony or a tokenizer.json path.")
@click.option("--token-prompts", type=click.Choice(["token_ids", "text"]), default="token_ids", show_default=True,
              help="Token-only traces: token ids on /v1/completions, or text on /v1/chat/completions.")
@click.option("--ramp", type=DURATION, default="0s", show_default=True,
              help="Agents arrive evenly over this time instead of all at once (inside the duration).")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True, help="Results directory.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Engine threads. Default: one per two cores.")
@click.option("--api-key-env", default=None, help="Name of the environment variable holding the API key.")
@click.option("--protocol", type=click.Choice(["h1", "h2", "auto"]), default="auto", show_default=True,
              help="HTTP/1.1, HTTP/2 (h2c prior knowledge on http://), or auto (ALPN on https://, else h1).")
@click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM file of CAs to trust for https://.")
@click.option("--insecure", is_flag=True, help="Do not verify the server certificate (self-signed test setups).")
@click.option("--streams-per-connection", type=click.IntRange(min=1), default=100, show_default=True,
              help="HTTP/2: agents multiplexed per connection.")
@click.option("--request-timeout", type=DURATION, default="600s", show_default=True, help="Per-request limit.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--start-turn", type=click.Choice(["random", "first"]), default="random", show_default=True,
              help="Where each agent starts its first conversation.")
@click.option("--no-cache-isolation", is_flag=True, help="Do not prefix each agent's prompts with a random tag.")
@click.option("--share-system-prompt", is_flag=True,
              help="Keep the system prompt and tools shared across agents (isolation prefix after them).")
@click.option("--history", type=click.Choice(["recorded", "generated"]), default="recorded", show_default=True,
              help="Send the recorded assistant turns, or feed back what the server generated.")
@click.option("--output-length", default="recorded", show_default=True, metavar="exact|recorded|fixed:N",
              help="exact: max_tokens = min_tokens = recorded + ignore_eos; recorded: cap only; fixed:N.")
@click.option("--tool-delay", default="recorded", show_default=True, metavar="SPEC",
              help="recorded, none, fixed:S, uniform:LO,HI or lognormal:MEDIAN,SIGMA (seconds).")
@click.option("--tool-delay-cap", type=DURATION, default=None, help="Upper bound on any tool delay.")
@click.option("--sim-ttft", type=DURATION, default="200ms", show_default=True, help="Built-in server: time to first token.")
@click.option("--sim-itl", type=DURATION, default="10ms", show_default=True, help="Built-in server: gap between tokens.")
@click.option("--sim-preset", type=click.Choice(["null", "h200-class", "gb300-class"]), default=None,
              help="Built-in server preset. Default: h200-class (illustrative), or null when --sim-ttft or "
                   "--sim-itl is given.")
def run(url, model, trajectories, concurrency, duration, tier_specs, tier_preset, profile, warmup, window,
        min_trajectories, min_trajectories_per_agent, start_concurrency, max_concurrency, resolution, tokenizer,
        token_prompts, ramp, out, workers, api_key_env, protocol, ca_file, insecure,
        streams_per_connection, request_timeout, seed,
        start_turn, no_cache_isolation, share_system_prompt, history, output_length, tool_delay, tool_delay_cap,
        sim_ttft, sim_itl, sim_preset) -> None:
    """Find the largest concurrency each SLO tier holds (or, with --concurrency, run one phase); write results."""
    from ..runner import RunConfig, RunError, execute
    from ..workload import WorkloadError

    given = click.get_current_context().get_parameter_source
    if sim_preset is None and any(given(n) is not click.core.ParameterSource.DEFAULT for n in ("sim_ttft", "sim_itl")):
        sim_preset = "null"

    cfg = RunConfig(url=url, model=model, trajectories=trajectories, concurrency=concurrency, duration_s=duration,
                    ramp_s=ramp, out=out, workers=workers, api_key_env=api_key_env, protocol=protocol,
                    ca_file=ca_file, insecure=insecure, streams_per_connection=streams_per_connection, request_timeout_s=request_timeout,
                    seed=seed, random_start_turn=start_turn == "random", cache_isolation=not no_cache_isolation,
                    share_system_prompt=share_system_prompt, history=history, output_length=output_length,
                    tool_delay=tool_delay, tool_delay_cap_s=tool_delay_cap, sim_ttft_s=sim_ttft, sim_itl_s=sim_itl,
                    sim_preset=sim_preset)
    cfg.tiers, cfg.tier_preset, cfg.profile = tuple(tier_specs), tier_preset, profile
    cfg.warmup_s, cfg.window_s = warmup, window
    cfg.min_trajectories, cfg.min_trajectories_per_agent = min_trajectories, min_trajectories_per_agent
    cfg.start_concurrency, cfg.max_concurrency, cfg.resolution = start_concurrency, max_concurrency, resolution
    cfg.tokenizer, cfg.token_prompts = tokenizer, token_prompts
    if concurrency is None:
        return _run_search(cfg)
    progress = ProgressLine(duration)
    try:
        path, s = execute(cfg, sys.argv, progress=progress)
    except (RunError, WorkloadError, ValueError) as e:
        progress.done()
        raise click.ClickException(str(e)) from None
    progress.done()
    click.echo(f"concurrency {s.concurrency}, {format_duration(s.duration_s)}: {s.requests_total} requests, "
               f"{s.requests_failed} failed, {s.output_tokens_total} output tokens "
               f"({s.throughput_output_tps:.0f} tok/s)")
    if s.requests_ok:
        t, v = s.ttft_s, s.output_speed_tps
        click.echo(f"TTFT p50 {t['p50']:.3f}s p95 {t['p95']:.3f}s p99 {t['p99']:.3f}s; output speed "
                   f"p25 {v['p25'] or 0:.1f} p50 {v['p50'] or 0:.1f} tok/s")
    for note in s.notes:
        click.echo(f"note: {note}")
    click.echo(f"results: {path}/summary.json")
    if s.interrupted:
        sys.exit(130)


class SearchDisplay:
    """The live line of a capacity search: probe, stage, agents, interim SLO figures, verdicts so far."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.verdicts: list[str] = []

    def __call__(self, probe, stage: str, elapsed_s: float, snap: Snapshot) -> None:
        import time as _time

        now = _time.monotonic()
        if now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        ttft, speed = snap.ttft_ns, snap.output_speed_mtps
        line = (f"[probe {probe.index} {probe.phase} c={probe.concurrency}] {stage} {elapsed_s:5.1f}s "
                f"agents {snap.agents_engaged}/{probe.concurrency} in-flight {snap.requests_in_flight} "
                f"P25 {speed.percentile(25) / 1000 if speed.count else 0:.1f} tok/s "
                f"P95 TTFT {_fmt_ms(ttft.percentile(95) if ttft.count else None)}"
                + (f" | {' '.join(self.verdicts[-4:])}" if self.verdicts else ""))
        sys.stderr.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def probe_done(self, probe) -> None:
        marks = " ".join(f"{name}:{'pass' if ok else 'FAIL'}" for name, ok in probe.tier_pass.items())
        state = "" if probe.steady else f" (not steady: {probe.not_steady_reason})"
        sys.stderr.write(("\r\x1b[2K" if self.tty else "") +
                         f"probe {probe.index} {probe.phase} c={probe.concurrency}: P25 "
                         f"{_fmt_num(probe.slo_output_speed_p25_tps)} tok/s, P95 TTFT "
                         f"{_fmt_num(probe.slo_ttft_p95_s)} s, {probe.requests} requests, "
                         f"{probe.requests_failed} failed -> {marks}{state}\n")
        self.verdicts.append(f"c={probe.concurrency}:{sum(probe.tier_pass.values())}/{len(probe.tier_pass)}")


def _fmt_num(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def _run_search(cfg) -> None:
    from ..report import report
    from ..runner import RunError, execute_search
    from ..workload import WorkloadError

    display = SearchDisplay()
    try:
        path, summary = execute_search(cfg, sys.argv, progress=display, on_probe=display.probe_done)
    except (RunError, WorkloadError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    table, files = report(path)
    click.echo(table)
    click.echo(f"results: {path}/summary.json, report: {path}/report.html")
    if summary["interrupted"]:
        sys.exit(130)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def report(directory) -> None:
    """Print the tier table of a results directory and write its plots and report.html."""
    from ..report import report as make_report

    try:
        table, files = make_report(directory)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(table)
    for f in files:
        click.echo(f"wrote {f}")


@main.command("serve-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Event-loop threads; with the batching model each is an independent engine replica.")
@click.option("--preset", type=click.Choice(["null", "h200-class", "gb300-class"]), default=None,
              help="A named configuration (the batching presets are illustrative). Default: null.")
@click.option("--model-kind", type=click.Choice(["null", "batching"]), default=None,
              help="null: fixed TTFT and pace; batching: continuous batching, prefill, prefix cache, queue. "
                   "Default: the preset's.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Batching model parameter, e.g. max_batch=64, step_base_s=0.012, prefill_tokens_per_s=3e4 "
                   "(repeatable; see SIMULATOR.md).")
@click.option("--ttft", type=DURATION, default="200ms", show_default=True, help="Null model: time to first token.")
@click.option("--itl", type=DURATION, default="10ms", show_default=True, help="Null model: gap between output events.")
@click.option("--tokens", type=click.IntRange(min=1), default=100, show_default=True,
              help="Tokens per response when the request has no max_tokens.")
@click.option("--tokens-per-chunk", type=click.IntRange(min=1), default=None,
              help="Tokens per output event (batching: per decode step). Default: 1, or the preset's.")
@click.option("--early-stop", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability that a request without ignore_eos stops before max_tokens (at or after min_tokens).")
@click.option("--model", default="agentperf-sim", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--fault", "faults", multiple=True, metavar="KIND=P",
              help="Inject a fault with probability P per request: http_500, http_429, http_503, reset, "
                   "truncate, malformed, stall, slow_headers (repeatable).")
@click.option("--stall", type=DURATION, default="0s", show_default=True, help="Stall length (0: never answer).")
@click.option("--slow-headers", type=DURATION, default="1s", show_default=True)
def serve_sim(host, port, workers, preset, model_kind, params, ttft, itl, tokens, tokens_per_chunk, early_stop, model,
              seed, faults, stall, slow_headers) -> None:
    """Serve the built-in simulated OpenAI-compatible endpoint until SIGINT/SIGTERM."""
    from ..sim.server import server_from_options

    fault_map, overrides = {}, {}
    for spec in faults:
        kind, sep, p = spec.partition("=")
        try:
            fault_map[kind] = float(p) if sep else 1.0
        except ValueError:
            raise click.BadParameter(f"{spec!r}: write KIND=PROBABILITY, e.g. http_500=0.05", param_hint="--fault")
    for spec in params:
        name, sep, value = spec.partition("=")
        if not sep:
            raise click.BadParameter(f"{spec!r}: write NAME=VALUE, e.g. max_batch=64", param_hint="--param")
        overrides[name] = value
    try:
        server = server_from_options(preset=preset, model_kind=model_kind, overrides=overrides, ttft_s=ttft, itl_s=itl,
                                     tokens_per_chunk=tokens_per_chunk, host=host, port=port, workers=workers,
                                     output_tokens=tokens, early_stop_probability=early_stop, model=model, seed=seed,
                                     faults=fault_map, stall_s=stall, slow_headers_s=slow_headers)
        server.start()
    except (ValueError, OSError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    info = server.describe()
    click.echo(f"model: {info['model_kind']} (preset {info['preset']})", err=True)
    click.echo(f"agentperf-native serve-sim listening on {server.url}", err=False)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.stop()
    m = server.metrics()
    click.echo(f"stopped after {m['requests_total']} requests, {m['tokens_generated']} tokens", err=True)


from .trajectories import trajectories  # noqa: E402

main.add_command(trajectories)

if __name__ == "__main__":
    main()
