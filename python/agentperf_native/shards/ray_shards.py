"""Shards as Ray actors (``run --ray ADDRESS|auto``): by default one per node of the cluster.

``pip install agentperf-native[ray]`` brings Ray. The driver joins the cluster (``ray.init(address=
...)``, or the one this process already joined) and places ``per_node`` actors on every alive node
with a hard node-affinity strategy. Actors ask for no CPU (``num_cpus=0``): a shard's engine runs
its own threads, and a node's CPUs must not keep its shards from being placed. Every node must
have agentperf-native installed (the same version: the shard checks the workload digest).
"""

from __future__ import annotations

from typing import Any

from .handle import ShardHandle, ShardLost, ShardStartError
from .spec import ShardSpec

INSTALL_HINT = "Ray is not installed: pip install 'agentperf-native[ray]' (on the driver and every node)"


def _ray():
    try:
        import ray
    except ImportError:
        raise ShardStartError(INSTALL_HINT) from None
    return ray


def connect(address: str) -> Any:
    """Joins the Ray cluster at ``address`` (``auto``: the one RAY_ADDRESS or a local head names),
    unless this process has joined one already. Returns the ray module."""
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ShardStartError(f"cannot join the Ray cluster at {address!r}: {e}") from None
    return ray


def alive_nodes(ray: Any) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


class _Actor:
    """The Ray actor: a :class:`~agentperf_native.shards.shard.Shard` behind one generic method."""

    def __init__(self, spec: ShardSpec) -> None:
        from .shard import Shard

        self.shard = Shard(spec)

    def call(self, method: str, *args: Any) -> Any:
        return self.shard.call(method, *args)


class RayShard(ShardHandle):
    """One shard as a Ray actor on node ``node_id``."""

    def __init__(self, ray: Any, spec: ShardSpec, node: dict) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._ray = ray
        self.index = spec.index
        self.node_id = node["NodeID"]
        actor_class = ray.remote(num_cpus=0, max_restarts=0)(_Actor)
        self.actor = actor_class.options(
            name=None, scheduling_strategy=NodeAffinitySchedulingStrategy(self.node_id, soft=False),
        ).remote(spec)
        self.where = f"node {node.get('NodeManagerAddress', self.node_id[:8])}"
        self.info: dict[str, Any] = {}

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        try:
            self.info = self.call("hello", timeout_s=timeout_s)
        except ShardLost as e:
            raise ShardStartError(f"shard {self.index} did not start on {self.where}: {e}") from None
        self.info["node_id"] = self.node_id
        self.where = f"{self.info['host']} pid {self.info['pid']}"
        return self.info

    def send(self, method: str, *args: Any) -> Any:
        return self.actor.call.remote(method, *args)

    def receive(self, ticket: Any, timeout_s: float) -> Any:
        ray = self._ray
        try:
            return ray.get(ticket, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise ShardLost(f"no answer in {timeout_s:g}s") from None
        except ray.exceptions.RayActorError as e:
            raise ShardLost(f"the actor died: {str(e).splitlines()[0]}") from None
        except ray.exceptions.RayTaskError as e:
            raise ShardLost(f"a call failed in the actor: {str(e.cause) if e.cause else e}") from None

    def close(self, timeout_s: float = 10.0) -> None:
        try:
            self.call("close", timeout_s=timeout_s)
        except ShardLost:
            pass
        self.kill()

    def kill(self) -> None:
        try:
            self._ray.kill(self.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def start_ray(address: str, make_specs, per_node: int, timeout_s: float = 300.0) -> list[RayShard]:
    """``per_node`` shards on every alive node. ``make_specs(count)`` gives the specs once the
    number of shards is known."""
    ray = connect(address)
    nodes = alive_nodes(ray)
    if not nodes:
        raise ShardStartError(f"the Ray cluster at {address!r} has no alive node")
    placed = [node for node in nodes for _ in range(per_node)]
    specs = make_specs(len(placed))
    handles = [RayShard(ray, spec, node) for spec, node in zip(specs, placed)]
    try:
        for h in handles:
            h.wait_ready(timeout_s)
    except BaseException:
        for h in handles:
            h.kill()
        raise
    return handles
