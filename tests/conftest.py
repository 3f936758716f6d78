import pytest

import agentperf_native as ap


def one_turn_workload(max_tokens: int = 100, turns: int = 1, tool_delay_s: float = 0.0, model: str = "agentperf-sim"):
    """A workload whose every request asks for exactly `max_tokens` tokens."""
    conv = ap.Conversation(
        system="You are a test.",
        turns=[ap.Turn(messages=[{"role": "user", "content": f"turn {i}"}], output_tokens=max_tokens,
                       tool_delay_s=tool_delay_s) for i in range(turns)],
    )
    return ap.encode([conv], model=model)


@pytest.fixture
def sim():
    servers = []

    def start(**kw):
        s = ap.SimServer(**kw).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def small_workload(tmp_path_factory):
    """The real-server tier's seeded synthetic set, small enough for tiny CPU models."""
    from real_servers import synth_workload

    return synth_workload(tmp_path_factory.mktemp("wl") / "small.jsonl")


def assert_ran(proc, out, *, invalid_for: tuple[str, ...] = ()) -> dict:
    """A ``run`` that completed: exit 0, or 3 (completed, result not valid) when every validity
    problem is a client-bound window (a loaded test machine, not the code under test) or one of
    ``invalid_for`` (problems the test causes on purpose). Returns the summary."""
    import json
    from pathlib import Path

    assert proc.returncode in (0, 3), proc.stderr
    summary = json.loads((Path(out) / "summary.json").read_text())
    if proc.returncode == 3:
        allowed = ("client-bound", *invalid_for)
        unexpected = [p for p in summary["validity"]["problems"] if not any(a in p for a in allowed)]
        assert not unexpected, unexpected
    return summary
