"""``agentperf-native serve-sim``: the built-in simulated server, until SIGINT / SIGTERM."""

from __future__ import annotations

import signal
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
def serve_sim(host, port, workers, preset, model_kind, params, ttft, itl, lockstep, tokens, tokens_per_chunk, early_stop, model,
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
                                     faults=fault_map, stall_s=stall, slow_headers_s=slow_headers,
                                     lockstep=lockstep)
        server.start()
    except (ValueError, OSError, RuntimeError) as e:
        raise CouldNotRun(str(e)) from None
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
