"""The simulator's performance-model parameters and its named presets.

Every number here is **illustrative**: the presets are shaped after the published *kind* of system
they are named for (one 8-GPU H200 node serving a large MoE model; one GB300 NVL72 rack serving
the same kind of model with multi-token prediction), not measured on one. They exist so that demos
and tests have plausible curves (speed that falls as the batch grows, TTFT that grows with queueing
and uncached prefill); never quote them as the performance of real hardware.

The model (see ``cpp/include/agentperf/sim_model.h`` and ``SIMULATOR.md``): continuous batching of
at most ``max_batch`` sequences; each step every decoding sequence gets ``tokens_per_chunk``
tokens, and the token budget left (``max_batched_tokens``) prefills admitted requests in chunks;

    step_s = step_base_s + step_per_seq_s * D + step_per_context_token_s * (context tokens of the D
             decoding sequences) + prefill_tokens_in_step / prefill_tokens_per_s.

Power (``cpp/src/sim/sim_power.h``): the replica runs on ``accelerators`` simulated accelerators
that each draw ``idle_w`` plus ``dynamic_w`` while a step is in progress; the server exports them
as dcgm-exporter metrics on ``/metrics``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Literal


@dataclass(frozen=True)
class BatchingParams:
    """Parameters of the batching model (one engine replica). Units are in the names."""

    max_batch: int = 64                      #: sequences in the running batch at most
    max_batched_tokens: int = 8192           #: tokens per step, decode + prefill chunk (0: unlimited)
    prefill_tokens_per_s: float = 20_000.0   #: uncached prompt tokens computed per second
    step_base_s: float = 0.010               #: fixed cost of one step
    step_per_seq_s: float = 50e-6            #: added per decoding sequence in a step
    step_per_context_token_s: float = 0.0    #: added per context token (prompt + generated) of those
    kv_capacity_tokens: int = 0              #: KV tokens for running sequences (0: unlimited)
    block_tokens: int = 16                   #: prefix-cache block size, in tokens (4 bytes of text each)
    prefix_cache_tokens: int = 0             #: prefix-cache capacity in tokens (0: no prefix cache)
    tokens_per_chunk: int = 1                #: tokens per sequence per decode step (speculative decoding)
    accelerators: int = 1                    #: simulated accelerators the replica runs on (power split evenly)
    idle_w: float = 150.0                    #: power of one accelerator while the replica is idle
    dynamic_w: float = 550.0                 #: power one accelerator adds while a step is in progress

    def step_s(self, decoding: float, context_tokens: float = 0.0, prefill_tokens: float = 0.0) -> float:
        """Duration of one step with ``decoding`` sequences holding ``context_tokens`` in all."""
        return (self.step_base_s + self.step_per_seq_s * decoding + self.step_per_context_token_s * context_tokens
                + prefill_tokens / self.prefill_tokens_per_s)

    def core_params(self) -> dict[str, int | float]:
        """The native model's parameter dict (nanoseconds)."""
        return {
            "max_batch": self.max_batch,
            "max_batched_tokens": self.max_batched_tokens,
            "prefill_tokens_per_s": float(self.prefill_tokens_per_s),
            "step_base_ns": round(self.step_base_s * 1e9),
            "step_per_seq_ns": round(self.step_per_seq_s * 1e9),
            "step_per_context_token_ns": float(self.step_per_context_token_s * 1e9),
            "kv_capacity_tokens": self.kv_capacity_tokens,
            "block_tokens": self.block_tokens,
            "prefix_cache_tokens": self.prefix_cache_tokens,
        }

    def power_params(self) -> dict[str, int | float]:
        """The native server's power keyword arguments."""
        return {"accelerators": self.accelerators, "idle_w": float(self.idle_w), "dynamic_w": float(self.dynamic_w)}

    def power_w(self, utilisation: float) -> float:
        """Mean power of the replica (all its accelerators) when busy ``utilisation`` of the time."""
        return self.accelerators * (self.idle_w + self.dynamic_w * utilisation)

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass(frozen=True)
class Preset:
    """A named simulator configuration."""

    name: str
    description: str
    kind: Literal["null", "batching"]
    batching: BatchingParams | None = None
    ttft_s: float = 0.2      #: null model: time to first token
    itl_s: float = 0.01      #: null model: gap between output events
    notes: list[str] = field(default_factory=list)


PRESETS: dict[str, Preset] = {
    "null": Preset(
        name="null",
        description="a server whose answer is known exactly: fixed TTFT, then one event per ITL (ground truth "
                    "for tests and client benchmarks)",
        kind="null",
    ),
    "h200-class": Preset(
        name="h200-class",
        description="ILLUSTRATIVE: shaped like one 8xH200-class node serving a large MoE model with vLLM/SGLang-"
                    "style continuous batching and chunked prefill (not a measurement)",
        kind="batching",
        batching=BatchingParams(
            max_batch=128,
            max_batched_tokens=8192,
            prefill_tokens_per_s=60_000.0,
            step_base_s=0.012,
            step_per_seq_s=120e-6,
            step_per_context_token_s=1e-9,
            kv_capacity_tokens=4_000_000,
            block_tokens=16,
            prefix_cache_tokens=2_000_000,
            tokens_per_chunk=1,
            accelerators=8,
            idle_w=150.0,
            dynamic_w=550.0,
        ),
    ),
    "demo": Preset(
        name="demo",
        description="ILLUSTRATIVE, the embedded default: an 8-accelerator node scaled so that a five-minute search "
                    "of the dsv4-pro tiers on the bundled trajectories shows the ramp, the bisection and a maximum "
                    "for every tier below 32 agents (fast single-stream decode, steep per-sequence cost)",
        kind="batching",
        batching=BatchingParams(
            max_batch=64,
            max_batched_tokens=8192,
            prefill_tokens_per_s=200_000.0,
            step_base_s=0.0015,
            step_per_seq_s=1.8e-3,
            step_per_context_token_s=0.0,
            kv_capacity_tokens=4_000_000,
            block_tokens=16,
            prefix_cache_tokens=2_000_000,
            tokens_per_chunk=1,
            accelerators=8,
            idle_w=150.0,
            dynamic_w=550.0,
        ),
    ),
    "gb300-class": Preset(
        name="gb300-class",
        description="ILLUSTRATIVE: shaped like one GB300 NVL72-class rack serving a large MoE model, wide batches "
                    "and two tokens per step (multi-token prediction); not a measurement",
        kind="batching",
        batching=BatchingParams(
            max_batch=1024,
            max_batched_tokens=65_536,
            prefill_tokens_per_s=600_000.0,
            step_base_s=0.008,
            step_per_seq_s=20e-6,
            step_per_context_token_s=0.2e-9,
            kv_capacity_tokens=40_000_000,
            block_tokens=16,
            prefix_cache_tokens=40_000_000,
            tokens_per_chunk=2,
            accelerators=72,
            idle_w=200.0,
            dynamic_w=1_200.0,
        ),
    ),
}

#: The preset ``agentperf-native run`` starts when it is given no ``--url``.
DEFAULT_EMBEDDED_PRESET = "demo"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown simulator preset {name!r} (known: {', '.join(PRESETS)})") from None


def apply_overrides(params: BatchingParams, overrides: dict[str, str | int | float]) -> BatchingParams:
    """``params`` with some fields replaced; values may be strings (converted to the field's type).

    ValueError names an unknown field or a value that does not convert.
    """
    fields = {f.name: f for f in dataclasses.fields(BatchingParams)}
    changes: dict[str, int | float] = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ValueError(f"unknown model parameter {key!r} (known: {', '.join(fields)})")
        convert = int if fields[key].type in (int, "int") else float
        try:
            changes[key] = convert(float(value)) if convert is int and isinstance(value, str) and "e" in value.lower() \
                else convert(value)
        except (TypeError, ValueError):
            raise ValueError(f"model parameter {key}={value!r}: not a number") from None
    return dataclasses.replace(params, **changes)
