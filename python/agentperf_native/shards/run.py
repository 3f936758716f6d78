"""How the ``run`` job plugs shards in: the engine it drives, what happens when a shard is lost,
and what the results say about the shards."""

from __future__ import annotations

from typing import Any, Callable

from ..engine import Engine
from .engine import ShardedEngine
from .spec import CONNECTIONS_PER_SHARD, WorkloadRecipe, auto_shards


def shard_count(shards: int | str, *, peak_agents: int, protocol: str, streams_per_connection: int) -> int:
    """``--shards``: a number, or ``auto`` (at most :data:`CONNECTIONS_PER_SHARD` connections each)."""
    if shards == "auto":
        return auto_shards(peak_agents, protocol, streams_per_connection)
    n = int(shards)
    if n < 1:
        raise ValueError("--shards must be >= 1 or auto")
    return n


def build_engine(endpoint, recipe: WorkloadRecipe, workload, *, shards: int | str, ray_address: str | None,
                 per_node: int, peak_agents: int, log: Callable[[str], None],
                 **engine_kwargs: Any) -> Engine | ShardedEngine:
    """The run's engine: in this process (one shard, the default), shard processes on this machine
    (``--shards N|auto``) or Ray actors (``--ray``)."""
    from . import start_shards

    if ray_address is None:
        n = shard_count(shards, peak_agents=peak_agents, protocol=engine_kwargs.get("protocol", "auto"),
                        streams_per_connection=engine_kwargs.get("streams_per_connection", 100))
        if shards == "auto":
            log(f"--shards auto: {n} process(es) for up to {peak_agents} agents (at most "
                f"{CONNECTIONS_PER_SHARD:,} connections each)")
        if n == 1:
            return Engine(endpoint, workload, **engine_kwargs)
        engine = start_shards(endpoint, recipe, shards=n, workload=workload, **engine_kwargs)
    else:
        engine = start_shards(endpoint, recipe, ray_address=ray_address, per_node=per_node, workload=workload,
                              **engine_kwargs)
    log(f"shards: {engine.shards} {engine.kind} engine(s), {engine.workers} worker threads in all: " +
        ", ".join(f"{h.where} ±{c.uncertainty_ns / 1e6:.2f} ms" for h, c in zip(engine.handles, engine.clocks)))
    return engine


def watch_losses(engine: Engine | ShardedEngine, policy: str, log: Callable[[str], None],
                 interrupt: Callable[[str], None]) -> None:
    """What a lost shard does to the run: ``continue`` with the others (the probe it hit is not
    steady), or ``stop`` the run (as an interruption, with the reason); with no shard left, stop."""
    if not isinstance(engine, ShardedEngine):
        return

    def lost(reason: str) -> None:
        if policy == "stop" or engine.live_shards == 0:
            log(f"{reason}: stopping the run" + (" (--on-shard-loss stop)" if policy == "stop" else ""))
            interrupt(reason)
        else:
            log(f"{reason}: the probe in progress is not steady; the run goes on with the others")

    engine.on_loss = lost


def finish(engine: Engine | ShardedEngine, manifest: dict, validity, notes: list[str]) -> None:
    """At the end of a run: the shards' clocks, usage and losses in the manifest; flagged clocks
    in the validity verdict; losses in the notes."""
    if not isinstance(engine, ShardedEngine):
        return
    engine.read_usage()
    manifest["shards"] = engine.describe()
    for problem in engine.problems():
        validity.problems.append(problem)
        validity.valid = False
    notes.extend(engine.losses)
