"""The driver's end of one shard: send a call, receive its answer later (so calls fan out)."""

from __future__ import annotations

from typing import Any


class ShardLost(Exception):
    """A shard stopped answering (its process died, its node went away, or a call failed in it)."""


class ShardStartError(RuntimeError):
    """A shard could not be started; the message says why and what to do."""


class ShardHandle:
    """One shard, seen from the driver. ``send`` returns a ticket; ``receive(ticket)`` returns the
    answer or raises :class:`ShardLost`. ``where`` names the shard for messages (host, pid)."""

    where: str = ""
    info: dict[str, Any]

    def send(self, method: str, *args: Any) -> Any:
        raise NotImplementedError

    def receive(self, ticket: Any, timeout_s: float) -> Any:
        raise NotImplementedError

    def call(self, method: str, *args: Any, timeout_s: float = 60.0) -> Any:
        return self.receive(self.send(method, *args), timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stops the shard's engine and ends the shard (killing it if it does not end in time)."""
        raise NotImplementedError

    def kill(self) -> None:
        """Ends the shard at once (tests: a shard that dies mid-probe)."""
        raise NotImplementedError
