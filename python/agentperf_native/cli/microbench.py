"""``agentperf-native microbench``: what the client itself costs on this machine (parse, call, print)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .common import DURATION


@click.command()
@click.option("--streams", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Concurrent paced streams (closed loop: a stream's next request goes out when its response ends).")
@click.option("--duration", type=DURATION, default="10s", show_default=True, help="Measured window per run.")
@click.option("--warmup", type=DURATION, default="2s", show_default=True,
              help="Time before the window, after the streams have started (spread arrivals add one response cycle).")
@click.option("--itl", type=DURATION, default="20ms", show_default=True, help="The null server's gap between events.")
@click.option("--ttft", type=DURATION, default="0s", show_default=True, help="The null server's time to first event.")
@click.option("--tokens", type=click.IntRange(min=2), default=64, show_default=True,
              help="Output events (one token each) per response.")
@click.option("--protocol", "protocols", type=click.Choice(["h1", "h2"]), multiple=True,
              help="HTTP/1.1 or h2c (repeatable; default h1).")
@click.option("--streams-per-connection", type=click.IntRange(min=1), default=100, show_default=True,
              help="HTTP/2 streams per connection.")
@click.option("--arrivals", type=click.Choice(["spread", "lockstep"]), default="spread", show_default=True,
              help="spread: streams start over one response cycle (events out of phase); lockstep: every stream's "
                   "event at the same instant, as a continuous-batching server emits (the server's shared grid).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Engine worker threads.")
@click.option("--url", default=None,
              help="An external null-style server (http://host:port/v1) instead of starting one; "
                   "--itl/--ttft/--tokens must then describe it. No client-added delay without our server's stamps.")
@click.option("--baseline", is_flag=True,
              help="Also read the same streams with the minimal native epoll reader (the floor; HTTP/1.1).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Rounds of the runs (engine and baseline alternate their order); the comparison uses medians.")
@click.option("--sweep", is_flag=True,
              help="Find the most streams driven at >= 99%% delivery with client-added delay p99 < 1 ms, per protocol.")
@click.option("--sweep-start", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--sweep-max", type=click.IntRange(min=1), default=20000, show_default=True)
@click.option("--sweep-runs", type=click.IntRange(min=2), default=12, show_default=True,
              help="At most this many runs per protocol.")
@click.option("--server-cpu", type=int, default=None, help="Pin the null server to this CPU.")
@click.option("--client-cpu", type=int, default=None, help="Pin this process (the clients) to this CPU.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write microbench.json and microbench.png into this folder.")
def microbench(streams, duration, warmup, itl, ttft, tokens, protocols, streams_per_connection, arrivals, workers,
               url, baseline, repeat, sweep, sweep_start, sweep_max, sweep_runs, server_cpu, client_cpu, out) -> None:
    """Measure the client's own cost: events per client CPU-second, delivered share, client-added delay,
    CPU per worker thread and memory per stream, against paced streams from the null server."""
    from ..microbench import report
    from ..microbench.bench import Options, run

    protocols = tuple(protocols) or ("h1",)
    if baseline and protocols != ("h1",):
        raise click.UsageError("--baseline reads HTTP/1.1 streams only: use it with --protocol h1")
    if itl <= 0:
        raise click.BadParameter("must be > 0", param_hint="--itl")
    if duration <= 0:
        raise click.BadParameter("must be > 0", param_hint="--duration")
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    for name, c in (("--server-cpu", server_cpu), ("--client-cpu", client_cpu)):
        if c is not None and c not in allowed:
            raise click.BadParameter(f"CPU {c} is not available here (available: {sorted(allowed)})", param_hint=name)
    opts = Options(streams=streams, duration_s=duration, warmup_s=warmup, ttft_s=ttft, itl_s=itl, tokens=tokens,
                   protocols=protocols, streams_per_connection=streams_per_connection, arrivals=arrivals,
                   workers=workers, url=url, baseline=baseline, repeat=repeat, server_cpu=server_cpu, client_cpu=client_cpu,
                   sweep=sweep, sweep_start=sweep_start, sweep_max=sweep_max, sweep_runs=sweep_runs)
    try:
        doc = run(opts, progress=lambda s: click.echo(s, err=True))
    except (ValueError, OSError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(report.summary(doc))
    if out:
        for p in report.write(doc, Path(out)):
            click.echo(f"wrote {p}")
    if any(r["problems"] for r in doc["runs"]):
        sys.exit(1)
