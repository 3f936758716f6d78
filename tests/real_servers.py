"""Real inference servers for the ``real_server`` test tier.

Each server is installed (once, outside the clone, keyed by version: ``scripts/servers/``) and
started on a free loopback port by its script. A server that cannot be installed or started fails
the test that needs it — the tier never skips silently; ``scripts/test.sh --quick`` leaves the tier
out instead.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "servers"
CLI = [sys.executable, "-m", "agentperf_native.cli"]


@dataclass
class Server:
    name: str
    url: str
    model: str
    pid: int
    log: str

    @property
    def root(self) -> str:
        return self.url.rsplit("/v1", 1)[0]

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.root + path, timeout=30) as r:
            return r.read()

    def stop(self) -> None:
        if not self.pid:
            return  # not ours
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.kill(self.pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: str, **env: str) -> Server:
    """Installs (when not yet) and starts ``scripts/servers/<script>.sh``; fails the test with the
    script's own explanation when it cannot. ``AGENTPERF_SERVER_<SCRIPT>=URL,MODEL`` (e.g.
    ``AGENTPERF_SERVER_VLLM_CPU=http://127.0.0.1:8002/v1,tiny``) uses a server already running
    instead (it is left running)."""
    given = os.environ.get(f"AGENTPERF_SERVER_{script.upper()}")
    if given and "PROMPT_TOKENS_DETAILS" not in env:  # (a server started differently on purpose)
        url, _, model = given.partition(",")
        return Server(script, url, model, 0, "")
    port = _free_port()
    proc = subprocess.run(["bash", str(SCRIPTS / f"{script}.sh"), "start", str(port)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        pytest.fail(f"{script}: the server could not be installed or started:\n{tail}", pytrace=False)
    line = proc.stdout.strip().splitlines()[-1]
    fields = dict(item.split("=", 1) for item in line.split())
    return Server(script, fields["url"], fields["model"], int(fields["pid"]), fields.get("log", ""))


@contextmanager
def serving(script: str, **env: str):
    """``start`` for the length of a ``with`` block (a module fixture's body)."""
    server = start(script, **env)
    try:
        yield server
    finally:
        server.stop()


def uniform_workload(path: Path, conversations: int = 12, turns: int = 6, user_words: int = 60,
                     output_tokens: int = 40, seed: int = 5) -> Path:
    """Conversations of short, equal turns: prefill takes milliseconds (and the small KV caches of
    tiny CPU models are not filled), so with a fixed output length every request holds a batch slot
    for the same time and the server's batch limit alone decides when a request waits."""
    rng = random.Random(seed)
    words = "alpha beta gamma delta build test patch file error line module import value".split()

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    with path.open("w") as f:
        for c in range(conversations):
            turns_ = [{"messages": ([] if t == 0 else [{"role": "assistant", "content": text(30)}])
                       + [{"role": "user", "content": text(user_words)}], "output_tokens": output_tokens,
                       "tool_delay_s": 0.1}
                      for t in range(turns)]
            f.write(json.dumps({"schema": "agentperf.trajectory.v1", "id": f"uniform-{c}",
                                "system": "You are a careful coding agent. " + text(80), "turns": turns_,
                                "metadata": {}}) + "\n")
    return path


def synth_workload(path: Path, **options) -> Path:
    """A seeded synthetic trajectory set small enough for a tiny CPU model."""
    args = {"conversations": 12, "mean-input-tokens": 3000, "min-input-tokens": 800, "max-input-tokens": 6000,
            "output-median-tokens": 40, "output-p95-tokens": 120, "turns-median": 8, "max-turns": 16,
            "tool-delay-median-s": 0.3, "tool-delay-min-s": 0.05, "tool-delay-max-s": 1, "system-tokens": 500}
    args.update({k.replace("_", "-"): v for k, v in options.items()})
    cmd = CLI + ["trajectories", "synth", "-o", str(path)]
    for k, v in args.items():
        cmd += [f"--{k}", str(v)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return path


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    out: Path

    def json(self, name: str) -> dict:
        return json.loads((self.out / name).read_text())

    @property
    def summary(self) -> dict:
        return self.json("summary.json")

    @property
    def manifest(self) -> dict:
        return self.json("manifest.json")

    @property
    def probes(self) -> list[dict]:
        return self.json("phases.json")["probes"]


def run_cli(server: Server, out: Path, *args: str, timeout: float = 1500, check: bool = True) -> Run:
    proc = subprocess.run(CLI + ["run", "--url", server.url, "--model", server.model, "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout)
    if check:  # completed: 0, or 3 when the result is not valid (the tests judge validity themselves)
        assert proc.returncode in (0, 3), proc.stderr[-3000:]
    return Run(proc, out)


def scrape(server: Server) -> dict[str, float]:
    """Prometheus text from ``/metrics`` as {name{labels}: value}."""
    out: dict[str, float] = {}
    for line in server.get("/metrics").decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def metric(samples: dict[str, float], name: str) -> float:
    """Sum of every series of ``name`` (any labels)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))
