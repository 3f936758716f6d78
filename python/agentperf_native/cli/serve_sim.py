"""``agentperf-native serve-sim``: the built-in simulated server, until SIGINT / SIGTERM.

``--processes N`` runs N server processes on one port (SO_REUSEPORT): this one and N - 1 children
(:func:`replica_main` in a fresh interpreter, given their options as a pickle on stdin; closing
their stdin stops them, so they end with this process). The kernel spreads incoming connections
over the processes; each is an independent replica (SIMULATOR.md), so together they accept more
connections than one process may open.
"""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import threading

import click

from ..sim.presets import PRESETS
from .common import DURATION
from .exit_codes import CouldNotRun


@click.command("serve-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Event-loop threads; with the batching model each is an independent engine replica.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes sharing the port (SO_REUSEPORT), each an independent replica (of --workers "
                   "threads): one process holds about 20,000 connections at most.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="A named configuration (the batching presets are illustrative). Default: null.")
@click.option("--model-kind", type=click.Choice(["null", "batching"]), default=None,
              help="null: fixed TTFT and pace; batching: continuous batching, prefill, prefix cache, queue. "
                   "Default: the preset's.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Batching model parameter, e.g. max_batch=64, step_base_s=0.012, prefill_tokens_per_s=3e4 "
                   "(repeatable; see SIMULATOR.md).")
@click.option("--ttft", type=DURATION, default="200ms", show_default=True, help="Null model: time to first token.")
@click.option("--itl", type=DURATION, default="10ms", show_default=True, help="Null model: gap between output events.")
@click.option("--lockstep", is_flag=True,
              help="Null model: every stream's events on one shared ITL grid (all streams' tokens at once).")
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
def serve_sim(host, port, workers, processes, preset, model_kind, params, ttft, itl, lockstep, tokens,
              tokens_per_chunk, early_stop, model, seed, faults, stall, slow_headers) -> None:
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
    options = dict(preset=preset, model_kind=model_kind, overrides=overrides, ttft_s=ttft, itl_s=itl,
                   tokens_per_chunk=tokens_per_chunk, host=host, port=port, workers=workers, output_tokens=tokens,
                   early_stop_probability=early_stop, model=model, seed=seed, faults=fault_map, stall_s=stall,
                   slow_headers_s=slow_headers, lockstep=lockstep, reuse_port=processes > 1)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = server_from_options(**options).start()
    except (ValueError, OSError, RuntimeError) as e:
        raise CouldNotRun(str(e)) from None
    replicas = []
    try:
        for i in range(1, processes):  # the others bind the port this one got
            replicas.append(_Replica({**options, "port": server.port, "seed": seed + i}))
        for r in replicas:
            r.wait_ready()
    except click.ClickException:
        for r in replicas:
            r.stop()
        server.stop()
        raise
    info = server.describe()
    click.echo(f"model: {info['model_kind']} (preset {info['preset']})" +
               (f"; {processes} processes share the port, each an independent replica" if processes > 1 else ""),
               err=True)
    click.echo(f"agentperf-native serve-sim listening on {server.url}", err=False)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.stop()
    totals = [server.metrics()] + [r.stop() for r in replicas]
    requests = sum(m.get("requests_total", 0) for m in totals)
    tokens_out = sum(m.get("tokens_generated", 0) for m in totals)
    click.echo(f"stopped after {requests} requests, {tokens_out} tokens" +
               (f" (per process: {', '.join(str(m.get('requests_total', '?')) for m in totals)} requests)"
                if processes > 1 else ""), err=True)


class _Replica:
    """One more server process on the same port (``--processes``)."""

    def __init__(self, options: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from agentperf_native.cli.serve_sim import replica_main; replica_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
        assert self.proc.stdin is not None
        self.proc.stdin.write(pickle.dumps(options))
        self.proc.stdin.flush()

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()  # "ready" or the reason it could not start
        if line != "ready":
            self.proc.wait()
            raise click.ClickException(f"a server process could not start: {line or 'it exited'}")

    def stop(self) -> dict:
        """Stops the process (its stdin closes) and returns its final metrics."""
        try:
            out, _ = self.proc.communicate(timeout=30)  # closes its stdin first
            return json.loads(out.decode().strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            self.proc.kill()
            self.proc.wait()
            return {}


def replica_main() -> None:
    """A ``--processes`` child: serve with the options on stdin until stdin closes (or a signal)."""
    from ..sim.server import server_from_options

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    options = pickle.load(sys.stdin.buffer)
    try:
        server = server_from_options(**options).start()
    except (ValueError, OSError, RuntimeError) as e:
        print(e, flush=True)
        return
    print("ready", flush=True)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent asked us to stop, or is gone
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.wait(0.5):
        pass
    server.stop()
    print(json.dumps({k: v for k, v in server.metrics().items() if isinstance(v, (int, float))}), flush=True)

