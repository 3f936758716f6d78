"""The built-in simulated inference server (native), as a context manager.

Two performance models (``cpp/include/agentperf/sim_model.h``; ``SIMULATOR.md`` derives their
capacity):

- ``null``: the first output event ``ttft_s`` after the request is received, then one event every
  ``itl_s``; no batch, no queue, no cache. The answer is known exactly (the engine's ground truth).
- ``batching``: one engine replica with continuous batching, chunked prefill at a token rate, a
  prefix cache and a FIFO queue (:class:`~agentperf_native.sim.presets.BatchingParams`).

Power: each replica runs on ``accelerators`` simulated accelerators drawing ``idle_w`` each, plus
``dynamic_w`` while the replica is busy (a batching step in progress; null model: a response in
flight). ``/metrics`` exports ``DCGM_FI_DEV_POWER_USAGE`` (W, mean over the last second) and
``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ since start) per accelerator, as dcgm-exporter does.

``SimServer()`` with no model arguments is the null server (200 ms TTFT, 10 ms ITL);
``SimServer(preset="h200-class")`` or ``SimServer(params=BatchingParams(...))`` is a batching one.
"""

from __future__ import annotations

from typing import Any

from .. import _core
from .presets import DEFAULT_EMBEDDED_PRESET, BatchingParams, Preset, apply_overrides, get_preset

#: Power settings of the null model (batching: the :class:`BatchingParams` fields of the same names).
DEFAULT_POWER = {"accelerators": 1, "idle_w": 150.0, "dynamic_w": 550.0}
POWER_KEYS = tuple(DEFAULT_POWER)

FAULT_KINDS = ("http_500", "http_429", "http_503", "reset", "truncate", "malformed", "stall", "slow_headers")


class SimServer:
    """OpenAI-compatible streaming server on loopback (HTTP/1.1 and h2c) whose timing comes from a model.

    Model: ``preset`` (a name in :data:`~agentperf_native.sim.presets.PRESETS`) or ``params`` (a
    :class:`BatchingParams`); neither means the null model with ``ttft_s`` / ``itl_s`` /
    ``tokens_per_chunk`` (the preset ``"null"`` uses those too). A response has the request's
    ``max_tokens`` tokens (else ``output_tokens``); without ``ignore_eos`` a request stops early
    with probability ``early_stop_probability`` (default 0), at a length drawn from the prompt and
    ``seed``, never below ``min_tokens``. ``faults`` maps a kind in :data:`FAULT_KINDS` to its
    probability per request; ``stall_s`` (0: never answer) and ``slow_headers_s`` size those faults.
    ``workers`` threads each run an independent replica of the model. ``accelerators``, ``idle_w``
    and ``dynamic_w`` (None: the batching params', else :data:`DEFAULT_POWER`) set each replica's
    simulated accelerators and their power (see the module docstring). ``reuse_port`` lets other
    processes listen on the same port (``serve-sim --processes``; on by itself when ``workers`` > 1).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, workers: int = 1, preset: str | None = None,
                 params: BatchingParams | None = None, ttft_s: float = 0.2, itl_s: float = 0.01,
                 output_tokens: int = 100, tokens_per_chunk: int = 1, early_stop_probability: float = 0.0,
                 model: str = "agentperf-sim", seed: int = 1, faults: dict[str, float] | None = None,
                 stall_s: float = 0.0, slow_headers_s: float = 1.0, accelerators: int | None = None,
                 idle_w: float | None = None, dynamic_w: float | None = None, lockstep: bool = False,
                 reuse_port: bool = False) -> None:
        if preset is not None and params is not None:
            raise ValueError("pass either preset or params, not both")
        self.preset: Preset | None = get_preset(preset) if preset is not None else None
        if self.preset is not None and self.preset.kind == "batching":
            params = self.preset.batching
        self.params: BatchingParams | None = params
        self.kind = "batching" if params is not None else "null"
        self.ttft_s = ttft_s
        self.itl_s = itl_s
        self.lockstep = lockstep
        self.host = host
        self.model = model
        self.workers = workers
        power = dict(params.power_params() if params is not None else DEFAULT_POWER)
        for key, value in (("accelerators", accelerators), ("idle_w", idle_w), ("dynamic_w", dynamic_w)):
            if value is not None:
                power[key] = value
        self.power: dict[str, int | float] = {"accelerators": int(power["accelerators"]),
                                              "idle_w": float(power["idle_w"]), "dynamic_w": float(power["dynamic_w"])}
        self._core = _core.SimServer(
            host=host, port=port, workers=workers, model_kind=self.kind, ttft_ns=int(ttft_s * 1e9),
            itl_ns=int(itl_s * 1e9), output_tokens=output_tokens,
            tokens_per_chunk=params.tokens_per_chunk if params is not None else tokens_per_chunk,
            params=params.core_params() if params is not None else {},
            early_stop_probability=early_stop_probability, model=model,
            preset=preset or ("custom" if params is not None else "null"), seed=seed, faults=dict(faults or {}),
            stall_ns=int(stall_s * 1e9), slow_headers_ns=int(slow_headers_s * 1e9), lockstep=lockstep,
            reuse_port=reuse_port, **self.power,
        )

    def start(self) -> "SimServer":
        self._core.start()
        return self

    def stop(self) -> None:
        self._core.stop()

    @property
    def port(self) -> int:
        return self._core.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def metrics(self) -> dict:
        """Counters and gauges (see ``SimServerMetrics`` in ``sim_server.h``), summed over workers.

        Power, exact at the call: ``power_w`` and ``energy_mj`` (lists, one per accelerator, index
        ``replica * accelerators + accelerator``: W over the last second, mJ since start) and
        ``utilisation`` (list, one per replica: busy time / time since start).
        """
        return self._core.metrics()

    def stamps(self) -> list[dict]:
        """The server's own stamps of each request that carried ``X-Request-Id`` (as the engine
        sends): ``request_id``, ``received_ns``, ``first_token_ns``, ``last_token_ns`` (when those
        events were handed to the kernel), ``output_events``, ``output_tokens``, ``status``,
        ``complete`` — on the client's clock, for oracle tests (bounded; the oldest are dropped)."""
        return self._core.stamps()

    def metrics_text(self) -> str:
        """The ``/metrics`` page (Prometheus text format)."""
        return self._core.metrics_text()

    def describe(self) -> dict[str, Any]:
        """What this server simulates, for a results manifest."""
        info: dict[str, Any] = {"kind": f"built-in simulator ({self.kind} model)", "model_kind": self.kind,
                                "preset": self.preset.name if self.preset else ("custom" if self.params else "null")}
        if self.preset is not None:
            info["description"] = self.preset.description
        if self.params is not None:
            info["params"] = self.params.as_dict()
        else:
            info.update({"ttft_s": self.ttft_s, "itl_s": self.itl_s, "lockstep": self.lockstep})
        info["power"] = dict(self.power, replicas=self.workers)
        return info

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def embedded_server(preset: str | None = None, *, ttft_s: float = 0.2, itl_s: float = 0.01,
                    seed: int = 1) -> SimServer:
    """The server ``agentperf-native run`` starts without ``--url`` (not started yet).

    ``preset`` None means :data:`~agentperf_native.sim.presets.DEFAULT_EMBEDDED_PRESET`; ``ttft_s``
    and ``itl_s`` apply to the ``null`` preset only. It listens on a free loopback port.
    """
    return SimServer(preset=preset or DEFAULT_EMBEDDED_PRESET, ttft_s=ttft_s, itl_s=itl_s, seed=seed)


def server_from_options(*, preset: str | None = None, model_kind: str | None = None,
                        overrides: dict[str, str | int | float] | None = None, ttft_s: float = 0.2,
                        itl_s: float = 0.01, tokens_per_chunk: int | None = None, **common: Any) -> SimServer:
    """A server from ``serve-sim``-style options (not started).

    The model kind is ``model_kind``, else the preset's, else null. A batching model starts from
    the preset's parameters (or :class:`BatchingParams` defaults) with ``overrides`` applied;
    ``tokens_per_chunk`` (None: the preset's, or 1) applies to either kind. ``common``: the other
    :class:`SimServer` keyword arguments.
    """
    base = get_preset(preset) if preset else None
    kind = model_kind or (base.kind if base else "null")
    if kind not in ("null", "batching"):
        raise ValueError(f"unknown model kind {kind!r} (known: null, batching)")
    if kind == "null":
        # The power settings apply to either model; the rest to the batching one only.
        power = {k: v for k, v in (overrides or {}).items() if k in POWER_KEYS}
        if set(overrides or {}) - set(power):
            raise ValueError("model parameters apply to the batching model; pass --model-kind batching or a "
                             "batching preset")
        if power:
            as_params = apply_overrides(BatchingParams(**DEFAULT_POWER), power)  # type conversion
            common = {**as_params.power_params(), **common}
        return SimServer(ttft_s=ttft_s, itl_s=itl_s, tokens_per_chunk=tokens_per_chunk or 1, **common)
    params = base.batching if base is not None and base.batching is not None else BatchingParams()
    changes: dict[str, str | int | float] = dict(overrides or {})
    if tokens_per_chunk is not None:
        changes["tokens_per_chunk"] = tokens_per_chunk
    if not changes and base is not None and base.batching is not None:
        return SimServer(preset=base.name, **common)
    return SimServer(params=apply_overrides(params, changes), **common)
