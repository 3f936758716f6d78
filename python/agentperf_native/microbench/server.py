"""The null server of the microbenchmark, in its own process (so that its CPU is never the client's).

:class:`ServerProcess` starts ``python -m agentperf_native.microbench.server`` with the null model's
settings; that process runs :class:`~agentperf_native.sim.server.SimServer`, prints its URL, then
answers one command per line on stdin with one JSON line on stdout:

* ``stamps SINCE_NS``: ``[[request_id, first_token_ns, last_token_ns, output_events], ...]`` of the
  complete requests received at or after ``SINCE_NS`` (:meth:`SimServer.stamps`: the server's own
  times at which it handed the first / last output event to the kernel, on the shared monotonic
  clock);
* ``metrics``: :meth:`SimServer.metrics`;
* ``stop`` (or end of input): stops the server and exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class NullModel:
    """The null server's pacing: the first event ``ttft_s`` after a request, then one every ``itl_s``;
    ``tokens`` events per response (one token each); ``lockstep``: every stream on one grid."""

    ttft_s: float = 0.0
    itl_s: float = 0.02
    tokens: int = 64
    lockstep: bool = False

    def cycle_s(self) -> float:
        """Seconds from one request's arrival to the next one's first event, for a client that
        answers instantly: TTFT then ``tokens - 1`` gaps; in lock-step the first event waits for
        the grid point after arrival + TTFT, so a cycle is ``floor(ttft / itl) + tokens`` ticks."""
        if self.lockstep:
            return (int(self.ttft_s / self.itl_s) + self.tokens) * self.itl_s
        return self.ttft_s + (self.tokens - 1) * self.itl_s

    def ideal_events_per_s(self, streams: int) -> float:
        """Output events per second ``streams`` streams get from a client that keeps up exactly."""
        return streams * self.tokens / self.cycle_s()


class ServerProcess:
    """The null server in a child process (optionally pinned to ``cpu``, at ``nice``, with ``faults``
    as ``serve-sim --fault``); use as a context manager."""

    def __init__(self, model: NullModel, *, workers: int = 1, cpu: int | None = None, nice: int = 0,
                 faults: dict[str, float] | None = None) -> None:
        self.model = model
        # the child's settings as one JSON argument (written by ServerProcess; not a command users type)
        config = {"ttft_s": model.ttft_s, "itl_s": model.itl_s, "tokens": model.tokens, "workers": workers,
                  "lockstep": model.lockstep, "faults": dict(faults or {})}
        self.command = [sys.executable, "-m", "agentperf_native.microbench.server", json.dumps(config)]

        def setup() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            if nice:
                os.setpriority(os.PRIO_PROCESS, 0, nice)

        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=setup if (cpu is not None or nice) else None)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("http"):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            self.proc.kill()
            raise RuntimeError(f"the null server did not start: {(line + err).strip()[-500:]}")
        self.url = line.strip()
        self.pid = self.proc.pid

    def _ask(self, command: str):
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the null server exited")
        return json.loads(line)

    def stamps(self, since_ns: int = 0) -> list[list[int]]:
        return self._ask(f"stamps {since_ns}")

    def metrics(self) -> dict:
        return self._ask("metrics")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")  # type: ignore[union-attr]
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    args = json.loads(sys.argv[1])  # written by ServerProcess
    from ..sim.server import SimServer

    server = SimServer(ttft_s=args["ttft_s"], itl_s=args["itl_s"], output_tokens=args["tokens"],
                       workers=args["workers"], lockstep=args["lockstep"], faults=args["faults"]).start()
    print(server.url, flush=True)
    try:
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "stamps":
                since = int(arg or 0)
                out = [[s["request_id"], s["first_token_ns"], s["last_token_ns"], s["output_events"]]
                       for s in server.stamps() if s["received_ns"] >= since and s["complete"]]
                print(json.dumps(out), flush=True)
            elif cmd == "metrics":
                print(json.dumps(server.metrics()), flush=True)
            else:
                break
    finally:
        server.stop()


if __name__ == "__main__":
    main()
