"""transformers serve (CPU torch, continuous batching, a tiny random Llama): the real_server tier.

It answers HTTP 422 to ignore_eos and min_tokens, sends no [DONE] and always streams usage; exact
lengths go through its own generation_config."""

import numpy as np
import pytest

import agentperf_native as ap
import real_servers as rs

pytestmark = pytest.mark.real_server


@pytest.fixture(scope="module")
def hf():
    with rs.serving("hf_serve") as server:
        yield server


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """Four short conversations (a few hundred tokens each turn): the tiny CPU model's KV cache is small."""
    return rs.uniform_workload(tmp_path_factory.mktemp("wl") / "short.jsonl", conversations=4, turns=4,
                               output_tokens=20)


def test_preflight_describes_the_transformers_dialect(hf):
    from agentperf_native import preflight
    from agentperf_native.endpoint import Endpoint, Transport, list_models

    endpoint = Endpoint.parse(hf.url)
    _, listing, _ = list_models(endpoint, Transport())
    pre = preflight.check(endpoint, hf.model, Transport(), listing=listing["data"])
    assert pre.ok, pre.problem  # the refused optional fields do not fail it
    assert pre.probes["ignore_eos"]["status"] == 422 and pre.probes["min_tokens"]["status"] == 422
    assert pre.done_marker is False and pre.chosen.usage == "always"
    assert pre.chosen.exact_length in ("generation_config", "none")


def test_fixed_phase_with_recorded_lengths_has_no_failures(hf, workload, tmp_path):
    run = rs.run_cli(hf, tmp_path / "rec", "--trajectories", str(workload), "--concurrency", "2",
                     "--duration", "15s", "--output-length", "recorded")
    s = run.summary
    assert s["phase"]["requests"] > 0 and s["phase"]["requests_failed"] == 0, s["phase"]["failures_by_kind"]
    assert s["validity"]["valid"], s["validity"]
    records = ap.read_records(run.out)
    assert not (records["flags"] & ap.engine.FLAG_TOKENS_ESTIMATED).any()  # usage came unasked


def test_exact_lengths_through_its_own_dialect_or_a_refusal_that_says_why(hf, workload, tmp_path):
    run = rs.run_cli(hf, tmp_path / "exact", "--trajectories", str(workload), "--concurrency", "2",
                     "--duration", "15s", "--output-length", "exact", check=False)
    if run.proc.returncode != 4:  # it ran (4: could not run, the pre-flight refused)
        assert run.proc.returncode in (0, 3), run.proc.stderr[-2000:]
        assert run.manifest["dialect"]["exact_length"] == "generation_config"
        records = ap.read_records(run.out)
        ok = records[records["error_kind"] == 0]
        assert len(ok) == len(records) > 0
        assert np.array_equal(ok["output_tokens"], ok["max_tokens"])
    else:
        err = run.proc.stderr
        assert "ignore_eos: HTTP 422" in err and "use --output-length recorded" in err, err[-2000:]
