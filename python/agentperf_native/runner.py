"""The ``run`` job: endpoint (or the embedded simulator), workload, one phase, results directory."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .endpoint import Endpoint
from .engine import Engine, Snapshot, now_ns
from .phase import PhaseSummary, run_phase
from .results import RecordWriter, base_manifest, write_json
from .server import SimServer
from .workload import RequestPolicy, bundled_path, encode, load_conversations


@dataclass
class RunConfig:
    url: str | None = None  # None: start the built-in simulator
    model: str | None = None
    trajectories: str | None = None  # None: the bundled default set
    concurrency: int = 16
    duration_s: float = 60.0
    ramp_s: float = 0.0  # agents arrive evenly over this time (0: all at once)
    out: str = "results"
    workers: int | None = None
    api_key_env: str | None = None
    request_timeout_s: float = 600.0
    seed: int = 1
    random_start_turn: bool = True
    cache_isolation: bool = True
    history: str = "recorded"
    output_length: str = "recorded"
    tool_delay: str = "recorded"
    tool_delay_cap_s: float | None = None
    share_system_prompt: bool = False
    protocol: str = "auto"
    ca_file: str | None = None
    insecure: bool = False
    streams_per_connection: int = 100
    sim_ttft_s: float = 0.2
    sim_itl_s: float = 0.01


class RunError(RuntimeError):
    """A run could not start; the message says what to do."""


def _api_key(cfg: RunConfig) -> str | None:
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise RunError(f"environment variable {cfg.api_key_env} (from --api-key-env) is not set or empty")
    return key


def execute(cfg: RunConfig, command: list[str], progress: Callable[[float, Snapshot, str], None] | None = None,
            log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> tuple[Path, PhaseSummary]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # its presence must mean *this* run finished
    api_key = _api_key(cfg)
    path = Path(cfg.trajectories) if cfg.trajectories else bundled_path()
    conversations = load_conversations(path)

    with ExitStack() as stack:
        server_info: dict = {}
        if cfg.url is None:
            sim = stack.enter_context(SimServer(ttft_s=cfg.sim_ttft_s, itl_s=cfg.sim_itl_s))
            endpoint = Endpoint.parse(sim.url)
            model = cfg.model or sim.model
            server_info = {"kind": "built-in simulator (null server)", "ttft_s": cfg.sim_ttft_s, "itl_s": cfg.sim_itl_s}
            log(f"no --url: started the built-in simulated server at {sim.url}")
        else:
            endpoint = Endpoint.parse(cfg.url)
            try:
                models = endpoint.list_models(api_key, ca_file=cfg.ca_file, insecure=cfg.insecure)
            except ConnectionError as e:
                raise RunError(str(e)) from e
            if cfg.model is None:
                if not models:
                    raise RunError(f"{endpoint.base_url}/models lists no model; pass --model")
                model = models[0]
            else:
                model = cfg.model
                if models and model not in models:
                    raise RunError(f"model {model!r} is not served at {endpoint.base_url} (it lists: "
                                   f"{', '.join(models)}); pass one of those to --model")
            server_info = {"kind": "external", "models": models}

        policy = RequestPolicy(history=cfg.history, output=cfg.output_length, tool_delay=cfg.tool_delay,
                               tool_delay_cap_s=cfg.tool_delay_cap_s, share_system_prompt=cfg.share_system_prompt,
                               seed=cfg.seed)
        workload = encode(conversations, model=model, policy=policy, base_path=endpoint.base_path)
        manifest = base_manifest(command, {k: v for k, v in dataclasses.asdict(cfg).items()})
        manifest.update({
            "endpoint": endpoint.base_url, "model": model, "server": server_info,
            "workload": {"path": str(path), "conversations": len(conversations), "sha256": workload.digest,
                         "requests_per_pass": workload.requests_per_pass},
            "started_unix_s": time.time(),
            "clock": "CLOCK_MONOTONIC ns; requests.csv times are relative to time_origin_ns",
        })
        engine = Engine(endpoint, workload, workers=cfg.workers, api_key=api_key,
                        request_timeout_s=cfg.request_timeout_s, seed=cfg.seed,
                        random_start_turn=cfg.random_start_turn, cache_isolation=cfg.cache_isolation,
                        spawn_interval_s=cfg.ramp_s / cfg.concurrency if cfg.concurrency else 0.0,
                        protocol=cfg.protocol, ca_file=cfg.ca_file, insecure=cfg.insecure,
                        streams_per_connection=cfg.streams_per_connection)
        origin = now_ns()
        manifest["time_origin_ns"] = origin
        manifest["engine_workers"] = engine.workers
        write_json(out / "manifest.json", manifest)
        writer = RecordWriter(out / "requests.csv", origin)
        try:
            summary, _ = run_phase(engine, cfg.concurrency, cfg.duration_s, writer=writer,
                                   drain_timeout_s=cfg.request_timeout_s, progress=progress)
        finally:
            writer.close()
        doc = dataclasses.asdict(summary)
        doc["records_written"] = writer.count
        doc["complete"] = not summary.interrupted
        write_json(out / "summary.json", doc)
    return out, summary
