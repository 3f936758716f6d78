"""The first failure of each kind, shown with its reason.

A run whose requests fail (a context limit, a refused field, an overloaded server) must say why, not
only how many. The engine keeps each record's kind and HTTP status; this module keeps the first
record of each (kind, status) as the run goes (an orchestrator listener) and, after the run, sends
that same turn once more to capture what the server answered (for HTTP status failures, which a
server repeats for the same request). The result goes into the run's notes and summary.
"""

from __future__ import annotations

import json

import numpy as np

from .engine import ERROR_KINDS
from .endpoint import Endpoint, Transport, fetch

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

    def explain(self, endpoint: Endpoint, transport: Transport, workload, model: str) -> list[dict]:
        """Each kind's first failure, with the server's answer to the same turn sent again (HTTP
        status failures only)."""
        out = []
        for key, f in self.first.items():
            f = dict(f, count=self.counts[key])
            if key[0] == HTTP_STATUS:
                try:
                    messages = workload.core.turn_body(f["conversation"], f["turn"]).decode()
                    body: dict = {"model": model, "stream": True}
                    if f["max_tokens"] > 0:
                        body["max_tokens"] = f["max_tokens"]
                    raw = json.dumps(body)[:-1] + "," + messages + "}"
                    resp = fetch(endpoint, transport, "POST", workload.request_path, raw.encode(), stream=True,
                                 root=True)
                    f["resent_status"] = resp.status
                    f["body"] = resp.excerpt(400) if not resp.error_kind else resp.error
                except Exception as e:  # noqa: BLE001 - the explanation is best effort
                    f["body"] = f"(could not re-send it: {e})"
            out.append(f)
        return out


def describe(failures: list[dict]) -> list[str]:
    lines = []
    for f in failures:
        what = f["kind"] + (f" {f['http_status']}" if f["http_status"] else "")
        line = f"{f['count']} failed as {what}; the first (conversation {f['conversation']}, turn {f['turn']})"
        status = f.get("resent_status")
        if "body" in f and status and 200 <= status < 300:
            line += f", sent again after the run, succeeded (HTTP {status}): the failure was transient"
        elif "body" in f:
            line += f", sent again after the run, answered HTTP {status}: {f['body']}"
        lines.append(line)
    return lines
