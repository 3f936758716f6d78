"""The ``agentperf-native`` command: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import signal
import sys
import threading

import click

from . import __version__
from .durations import format_duration, parse_duration
from .engine import Snapshot


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
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True, help="Concurrent agents.")
@click.option("--duration", type=DURATION, default="60s", show_default=True, help="Measured time, e.g. 30s, 10m.")
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
def run(url, model, trajectories, concurrency, duration, ramp, out, workers, api_key_env, protocol, ca_file, insecure,
        streams_per_connection, request_timeout, seed,
        start_turn, no_cache_isolation, share_system_prompt, history, output_length, tool_delay, tool_delay_cap,
        sim_ttft, sim_itl) -> None:
    """Run agents at a fixed concurrency for a duration and write a results directory."""
    from .runner import RunConfig, RunError, execute
    from .workload import WorkloadError

    cfg = RunConfig(url=url, model=model, trajectories=trajectories, concurrency=concurrency, duration_s=duration,
                    ramp_s=ramp, out=out, workers=workers, api_key_env=api_key_env, protocol=protocol,
                    ca_file=ca_file, insecure=insecure, streams_per_connection=streams_per_connection, request_timeout_s=request_timeout,
                    seed=seed, random_start_turn=start_turn == "random", cache_isolation=not no_cache_isolation,
                    share_system_prompt=share_system_prompt, history=history, output_length=output_length,
                    tool_delay=tool_delay, tool_delay_cap_s=tool_delay_cap, sim_ttft_s=sim_ttft, sim_itl_s=sim_itl)
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


@main.command("serve-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--ttft", type=DURATION, default="200ms", show_default=True, help="Time to first token.")
@click.option("--itl", type=DURATION, default="10ms", show_default=True, help="Gap between output events.")
@click.option("--tokens", type=click.IntRange(min=1), default=100, show_default=True,
              help="Tokens per response when the request has no max_tokens.")
@click.option("--tokens-per-chunk", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--model", default="agentperf-sim", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--fault", "faults", multiple=True, metavar="KIND=P",
              help="Inject a fault with probability P per request: http_500, http_429, http_503, reset, "
                   "truncate, malformed, stall, slow_headers (repeatable).")
@click.option("--stall", type=DURATION, default="0s", show_default=True, help="Stall length (0: never answer).")
@click.option("--slow-headers", type=DURATION, default="1s", show_default=True)
def serve_sim(host, port, workers, ttft, itl, tokens, tokens_per_chunk, model, seed, faults, stall, slow_headers) -> None:
    """Serve the built-in simulated OpenAI-compatible endpoint until SIGINT/SIGTERM."""
    from .server import SimServer

    fault_map = {}
    for spec in faults:
        kind, sep, p = spec.partition("=")
        try:
            fault_map[kind] = float(p) if sep else 1.0
        except ValueError:
            raise click.BadParameter(f"{spec!r}: write KIND=PROBABILITY, e.g. http_500=0.05", param_hint="--fault")
    try:
        server = SimServer(host=host, port=port, workers=workers, ttft_s=ttft, itl_s=itl, output_tokens=tokens,
                           tokens_per_chunk=tokens_per_chunk, model=model, seed=seed, faults=fault_map,
                           stall_s=stall, slow_headers_s=slow_headers)
        server.start()
    except (ValueError, OSError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"agentperf-native serve-sim listening on {server.url}", err=False)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.stop()
    m = server.metrics()
    click.echo(f"stopped after {m['requests_total']} requests, {m['tokens_generated']} tokens", err=True)


if __name__ == "__main__":
    main()
