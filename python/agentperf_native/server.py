"""The built-in simulated inference server (native), as a context manager."""

from __future__ import annotations

from . import _core

FAULT_KINDS = ("http_500", "http_429", "http_503", "reset", "truncate", "malformed", "stall", "slow_headers")


class SimServer:
    """OpenAI-compatible streaming server on loopback with a known answer.

    The first output event comes ``ttft_s`` after the request is received, then one event every
    ``itl_s``; a response has the request's ``max_tokens`` tokens (else ``output_tokens``).
    ``faults`` maps a kind in :data:`FAULT_KINDS` to its probability per request.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, workers: int = 1, ttft_s: float = 0.2,
                 itl_s: float = 0.01, output_tokens: int = 100, tokens_per_chunk: int = 1,
                 model: str = "agentperf-sim", seed: int = 1, faults: dict[str, float] | None = None,
                 stall_s: float = 0.0, slow_headers_s: float = 1.0) -> None:
        self.host = host
        self.model = model
        self._core = _core.SimServer(
            host=host, port=port, workers=workers, ttft_ns=int(ttft_s * 1e9), itl_ns=int(itl_s * 1e9),
            output_tokens=output_tokens, tokens_per_chunk=tokens_per_chunk, model=model, seed=seed,
            faults=dict(faults or {}), stall_ns=int(stall_s * 1e9), slow_headers_ns=int(slow_headers_s * 1e9),
        )
        self._started = False

    def start(self) -> "SimServer":
        self._core.start()
        self._started = True
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
        return self._core.metrics()

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
