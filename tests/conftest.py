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
