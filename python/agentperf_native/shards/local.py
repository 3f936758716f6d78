"""Shards as local processes (``run --shards N``): ``python -m agentperf_native.shards.local``,
one socket pair each.

The protocol on the socket (:class:`multiprocessing.connection.Connection` framing, pickled
messages): the driver sends the :class:`~.spec.ShardSpec` first, the shard answers ``("ok",
hello)`` once its engine is built; then the driver sends ``(method, args)`` and the shard answers
``("ok", value)`` or ``("error", message)``, one answer per call, in order. The shard ignores
SIGINT (Ctrl-C reaches the whole process group; the driver decides how the run stops) and ends
when the socket closes, so a driver that dies takes its shards with it. A fresh interpreter (not
a fork, not multiprocessing's spawn) needs no ``if __name__ == "__main__"`` guard in the caller.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .handle import ShardHandle, ShardLost, ShardStartError
from .spec import ShardSpec


def _serve(conn: Connection) -> None:
    """The shard process: build the engine, then answer calls until told to close or the socket ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .shard import Shard

    try:
        spec = conn.recv()
        shard = Shard(spec)
    except (EOFError, OSError):
        return
    except Exception as e:  # noqa: BLE001 - said to the driver, which stops with the message
        conn.send(("error", str(e) if isinstance(e, RuntimeError) else f"{type(e).__name__}: {e}"))
        return
    try:
        conn.send(("ok", shard.hello()))
        while True:
            try:
                method, args = conn.recv()
            except (EOFError, OSError):
                return
            try:
                value = shard.call(method, *args)
            except Exception as e:  # noqa: BLE001 - the driver treats a failed call as a lost shard
                conn.send(("error", f"{method}: {type(e).__name__}: {e}"))
                continue
            conn.send(("ok", value))
            if method == "close":
                return
    finally:
        shard.close()


def _exit_reason(process: subprocess.Popen) -> str:
    code = process.poll()
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class LocalShard(ShardHandle):
    """A shard in a child process of this one."""

    def __init__(self, spec: ShardSpec) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])  # the child imports this very package
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen([sys.executable, "-m", "agentperf_native.shards.local", str(theirs.fileno())],
                                        pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn = Connection(ours.detach())
        self.index = spec.index
        self.where = f"pid {self.process.pid}"
        self.info: dict[str, Any] = {}
        self.send_spec = lambda: self._conn.send(spec)

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        try:
            self.send_spec()
            self.info = self.receive(None, timeout_s)
        except ShardLost as e:
            raise ShardStartError(f"shard {self.index} did not start: {e}") from None
        self.where = f"{self.info['host']} pid {self.info['pid']}"
        return self.info

    def send(self, method: str, *args: Any) -> None:
        try:
            self._conn.send((method, args))
        except (OSError, ValueError) as e:
            raise ShardLost(self._why(e)) from None

    def receive(self, ticket: Any, timeout_s: float) -> Any:
        try:
            if not self._conn.poll(timeout_s):
                raise ShardLost(f"no answer in {timeout_s:g}s")
            status, value = self._conn.recv()
        except (EOFError, OSError, ValueError) as e:
            raise ShardLost(self._why(e)) from None
        if status != "ok":
            raise ShardLost(value)
        return value

    def _why(self, e: BaseException) -> str:
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            return f"connection broken ({e})"
        return _exit_reason(self.process)

    def close(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            try:
                self.call("close", timeout_s=timeout_s)
            except ShardLost:
                pass
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self._conn.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def start_local(specs: list[ShardSpec], timeout_s: float = 300.0) -> list[LocalShard]:
    """Starts one process per spec (all at once) and waits until every engine is built."""
    handles = [LocalShard(spec) for spec in specs]  # every interpreter starts at once
    try:
        for h in handles:
            h.wait_ready(timeout_s)
    except BaseException:
        for h in handles:
            h.close(timeout_s=2.0)
        raise
    return handles


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
