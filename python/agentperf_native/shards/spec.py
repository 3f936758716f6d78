"""What one shard is given: the workload recipe, the engine's options, its place among the shards.

A shard is one native engine in a process of its own. Every shard replays the same workload (it
encodes the recipe itself and checks the digest against the driver's), with a seed stream of its
own (:func:`shard_seed`), and owns a partition of the agents (:func:`partition`). Agent ids stay
unique across shards: a shard's engine-wide id ``L`` becomes ``L * count + index`` in its records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..endpoint import Endpoint
from ..workload import EncodedWorkload, RequestPolicy, encode

#: At most this many HTTP/1.1 connections per shard process with ``--shards auto`` (one process
#: can open about 20,000 sockets on a default Linux setup: the hard RLIMIT_NOFILE).
CONNECTIONS_PER_SHARD = 16_000

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


@dataclass
class WorkloadRecipe:
    """How the workload is encoded: the conversations and :func:`~agentperf_native.workload.encode`'s
    arguments (the tokenizer by name, loaded where it is encoded)."""

    conversations: list
    model: str
    policy: RequestPolicy = field(default_factory=RequestPolicy)
    base_path: str = "/v1"
    include_usage: bool = True
    token_prompts: str = "token_ids"
    tokenizer: str | None = None  # token-only traces: cl100k_base, ... or a tokenizer.json path

    def encode(self) -> EncodedWorkload:
        tokenizer = None
        if self.tokenizer is not None:
            from ..trajectories import load_tokenizer

            tokenizer = load_tokenizer(self.tokenizer)
        return encode(self.conversations, model=self.model, policy=self.policy, base_path=self.base_path,
                      tokenizer=tokenizer, token_prompts=self.token_prompts, include_usage=self.include_usage)


@dataclass
class ShardSpec:
    """Everything a shard process needs to build its engine (picklable)."""

    index: int
    count: int  # shards in the run, the lost ones included (agent ids depend on it)
    endpoint: Endpoint
    recipe: WorkloadRecipe
    digest: str  # the driver's workload digest: the shard must encode the same workload
    engine: dict[str, Any]  # Engine keyword arguments; its seed is already this shard's


def request_id_base(index: int) -> int:
    """The bits shard ``index`` ORs into its request ids: the shard number in bits 48–61, above the
    engine's worker index (bits 40–47) and sequence, so X-Request-Id is unique across shards (shard
    0 keeps the in-process engine's ids)."""
    if not 0 <= index < 1 << 14:
        raise ValueError("at most 16,384 shards")
    return index << 48


def shard_seed(seed: int, index: int) -> int:
    """Shard ``index``'s seed: shard 0 keeps the run's seed (one shard replays as the in-process
    engine does); the others get well-mixed seeds of their own (splitmix64 of seed and index)."""
    if index == 0:
        return seed
    z = (seed + index * _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


def partition(agents: int, shards: int) -> list[int]:
    """``agents`` split over ``shards`` as evenly as possible (the first ones take the remainder)."""
    if shards < 1:
        raise ValueError("need at least one shard")
    base, extra = divmod(agents, shards)
    return [base + (1 if i < extra else 0) for i in range(shards)]


def auto_shards(peak_agents: int, protocol: str, streams_per_connection: int) -> int:
    """Shard processes for ``--shards auto``: none holds more than :data:`CONNECTIONS_PER_SHARD`
    connections (HTTP/1.1: one per agent; HTTP/2: one per ``streams_per_connection`` agents)."""
    connections = peak_agents if protocol != "h2" else math.ceil(peak_agents / streams_per_connection)
    return max(1, math.ceil(connections / CONNECTIONS_PER_SHARD))
