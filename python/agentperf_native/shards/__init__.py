"""Beyond one process and one host: the agents split over engine shards.

One process can open only about 20,000 sockets (the hard RLIMIT_NOFILE of a default setup), so an
HTTP/1.1 fleet larger than that is driven by several shards: local processes (``run --shards N``)
or Ray actors (``run --ray ADDRESS``). :class:`ShardedEngine` drives them with the interface of one
engine; :func:`start_shards` starts them. Percentiles stay exact (records and histograms are
merged, never percentiles); windows line up across hosts (:mod:`.clock`).
"""

from __future__ import annotations

from typing import Any, Callable

from .engine import ShardedEngine
from .handle import ShardLost, ShardStartError
from .spec import CONNECTIONS_PER_SHARD, ShardSpec, WorkloadRecipe, auto_shards, partition, request_id_base, shard_seed


def start_shards(endpoint, recipe: WorkloadRecipe, *, shards: int = 2, ray_address: str | None = None,
                 per_node: int = 1, workload=None, on_loss: Callable[[str], None] | None = None,
                 start_timeout_s: float = 300.0, **engine_kwargs: Any) -> ShardedEngine:
    """Starts the shards and returns the engine that drives them (not started: call ``start``).

    Local (``ray_address`` None): ``shards`` processes on this machine, each with
    ``engine_kwargs['workers']`` threads (default: this machine's default split over the shards).
    Ray: ``per_node`` actors on every alive node of the cluster at ``ray_address``.
    ``engine_kwargs`` are :class:`~agentperf_native.engine.Engine` keyword arguments; ``seed``
    becomes each shard's own seed (:func:`shard_seed`) and ``spawn_interval_s`` (a ramp over the
    whole fleet) each shard's share of it.
    """
    from ..engine import default_workers
    from ..endpoint import Endpoint

    endpoint = endpoint if isinstance(endpoint, Endpoint) else Endpoint.parse(endpoint)
    workload = workload if workload is not None else recipe.encode()
    seed = int(engine_kwargs.pop("seed", 1))
    spawn = float(engine_kwargs.pop("spawn_interval_s", 0.0))

    def specs(count: int, workers: int | None) -> list[ShardSpec]:
        return [ShardSpec(index=i, count=count, endpoint=endpoint, recipe=recipe, digest=workload.digest,
                          engine={**engine_kwargs, "workers": workers, "seed": shard_seed(seed, i),
                                  "spawn_interval_s": spawn * count, "request_id_base": request_id_base(i)})
                for i in range(count)]

    if ray_address is None:
        from .local import start_local

        if shards < 1:
            raise ValueError("shards must be >= 1")
        workers = engine_kwargs.pop("workers", None) or max(1, default_workers() // shards)
        handles = start_local(specs(shards, workers), timeout_s=start_timeout_s)
        details: dict[str, Any] = {}
    else:
        from .ray_shards import start_ray

        workers = engine_kwargs.pop("workers", None)  # None: each node's own default
        handles = start_ray(ray_address, lambda n: specs(n, workers), per_node, timeout_s=start_timeout_s)
        details = {"ray_address": ray_address, "per_node": per_node}
    try:
        return ShardedEngine(handles, endpoint=endpoint, workload=workload, kind="local" if ray_address is None
                             else "ray", on_loss=on_loss, details=details)
    except BaseException:
        for h in handles:
            h.close(timeout_s=2.0)
        raise


__all__ = ["CONNECTIONS_PER_SHARD", "ShardLost", "ShardSpec", "ShardStartError", "ShardedEngine", "WorkloadRecipe",
           "auto_shards", "partition", "request_id_base", "shard_seed", "start_shards"]
