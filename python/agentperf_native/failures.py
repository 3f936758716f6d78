"""The first failure of each kind, shown with its reason.

A run whose requests fail (a context limit, a refused field, an overloaded server) must say why, not
only how many. This module counts the failures of each (kind, HTTP status) as the run goes (an
orchestrator listener); the engine itself keeps the first failed request of each with what the
server sent (``Engine.first_failures``: an HTTP status failure's error body, a malformed or error
event's data, at most 4 KiB), so the reason is the one the server gave at the time, never a second
request after the run. The result goes into the run's notes and summary.
"""

from __future__ import annotations

import numpy as np

from .endpoint import Response
from .engine import ERROR_KINDS

HTTP_STATUS = ERROR_KINDS.index("http_status") if "http_status" in ERROR_KINDS else -1
CANCELLED = ERROR_KINDS.index("cancelled") if "cancelled" in ERROR_KINDS else -1


class FirstFailures:
    def __init__(self) -> None:
        self.first: dict[tuple[int, int], dict] = {}
        self.counts: dict[tuple[int, int], int] = {}

    def __call__(self, batch: np.ndarray) -> None:
        bad = batch[(batch["error_kind"] != 0) & (batch["error_kind"] != CANCELLED)]
        for r in bad:
            key = (int(r["error_kind"]), int(r["http_status"]))
            self.counts[key] = self.counts.get(key, 0) + 1
            if key not in self.first:
                self.first[key] = {"kind": ERROR_KINDS[key[0]], "http_status": key[1],
                                   "conversation": int(r["conversation"]), "turn": int(r["turn"]),
                                   "max_tokens": int(r["max_tokens"])}

    def explain(self, engine) -> list[dict]:
        """Each kind's first failure with its count and, from the engine's copy, what the server sent
        (``body``, an excerpt; absent when the server sent nothing)."""
        kept = {(f["kind"], f["http_status"]): f for f in engine.first_failures()}
        out = []
        for key, f in self.first.items():
            f = dict(f, count=self.counts[key])
            sample = kept.get((f["kind"], f["http_status"]))
            if sample is not None:
                f.update(conversation=sample["conversation"], turn=sample["turn"], max_tokens=sample["max_tokens"])
                if sample["body"].strip():
                    f["body"] = Response(sample["http_status"], sample["body"].encode()).excerpt(400)
            out.append(f)
        return out


def describe(failures: list[dict]) -> list[str]:
    lines = []
    for f in failures:
        what = f["kind"] + (f" {f['http_status']}" if f["http_status"] else "")
        line = f"{f['count']} failed as {what}; the first (conversation {f['conversation']}, turn {f['turn']})"
        if f.get("body"):
            line += f" answered: {f['body']}" if f["kind"] == "http_status" else f", the server sent: {f['body']}"
        lines.append(line)
    return lines
