"""One measurement core: a fixed phase and a search probe are judged by the same function, from the
records on disk, with failures counted the same way."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native.measure import WindowMeter
from agentperf_native.results import read_records
from conftest import assert_ran

CLI = [sys.executable, "-m", "agentperf_native.cli"]


def _run(args, tmp_path, name):
    out = tmp_path / name
    proc = subprocess.run(CLI + ["run", "--out", str(out), "--tool-delay", "fixed:0.05", *args],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 3  # 10 % injected failures: completed, not a valid result
    assert_ran(proc, out, invalid_for=("error rate",))
    probes = json.loads((out / "phases.json").read_text())["probes"]
    manifest = json.loads((out / "manifest.json").read_text())
    return out, probes, manifest


def _recomputed(out, probe, manifest):
    return ap.measure(read_records(out), window_start_ns=probe["window_start_ns"], window_end_ns=probe["window_end_ns"],
                      turns_per_conversation=manifest["workload"]["turns_per_conversation"],
                      agents=probe["concurrency"]).to_dict()


def _same(a, b, rel=0.0):
    """Equal, with inf == inf and nan == nan (JSON round trip); floats within ``rel``."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rel * max(abs(a), abs(b))
    return a == b


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory):
    """A fixed phase and a one-probe search at 4 agents against one known-pace server with 10 %
    injected failures (HTTP 500)."""
    tmp = tmp_path_factory.mktemp("modes")
    server = ap.SimServer(ttft_s=0.05, itl_s=0.004, faults={"http_500": 0.1}, seed=3).start()
    try:
        common = ["--url", server.url, "--trajectories", str(tmp / "conv.jsonl")]
        turns = [{"messages": [{"role": "user", "content": f"step {i}"}], "output_tokens": 20} for i in range(4)]
        (tmp / "conv.jsonl").write_text(json.dumps({"id": "c", "turns": turns}) + "\n")
        fixed = _run(common + ["--concurrency", "4", "--duration", "4s"], tmp, "fixed")
        probe = _run(common + ["--start-concurrency", "4", "--max-concurrency", "4", "--warmup", "0s",
                               "--window", "4s", "--tier", "1:10"], tmp, "search")
        injected = server.metrics()
    finally:
        server.stop()
    return fixed, probe, injected


def test_a_fixed_phase_and_a_search_probe_are_judged_by_the_same_function(both_modes):
    for out, probes, manifest in both_modes[:2]:
        for p in probes:  # (the search goes on below 4: with 10 % failed, P95 TTFT is a violation)
            stats = _recomputed(out, p, manifest)
            assert _same({k: p[k] for k in stats}, stats), (out.name, p, stats)
    fixed, searched = both_modes[0][1][0], both_modes[1][1][0]
    assert fixed["concurrency"] == searched["concurrency"] == 4
    assert fixed.keys() == searched.keys()  # one probe record, one schema
    assert (fixed["phase"], searched["phase"]) == ("fixed", "ramp")
    for p in (fixed, searched):  # the known pace: 50 ms TTFT, 4 ms per token
        assert p["ttft_s"]["p50"] == pytest.approx(0.05, abs=0.005)
        assert p["output_speed_tps"]["p50"] == pytest.approx(250, rel=0.05)


def test_failures_count_the_same_in_both_modes(both_modes):
    for out, probes, _ in both_modes[:2]:
        p = probes[0]
        records = read_records(out)
        window = records[(records["scheduled_ns"] >= p["window_start_ns"]) &
                         (records["scheduled_ns"] < p["window_end_ns"])]
        failed = int(np.count_nonzero(window["error_kind"] != 0))
        assert failed > 0 and p["requests_failed"] == failed
        assert p["failures_by_kind"] == {"http_status": failed}
        assert p["error_rate"] == pytest.approx(failed / len(window))
        assert 0.03 < p["error_rate"] < 0.25
        # SLO view: with more than 5 % failed, the P95 TTFT is a violation (infinite); the
        # successful-request view stays finite.
        if p["error_rate"] > 0.05:
            assert p["slo_ttft_p95_s"] == math.inf
        assert p["ttft_s"]["p95"] < 1.0
    # Every failed record anywhere in the runs is one the server injected.
    total_failed = sum(int(np.count_nonzero(read_records(o)["error_kind"] != 0)) for o, _, _ in both_modes[:2])
    assert total_failed <= both_modes[2]["faults"]["http_500"]


def _random_records(rng, n=5000):
    rec = np.zeros(n, dtype=ap.RECORD_DTYPE)
    rec["scheduled_ns"] = np.sort(rng.integers(0, 10_000_000_000, n))
    rec["sent_ns"] = rec["scheduled_ns"] + 1000
    rec["first_token_ns"] = rec["scheduled_ns"] + rng.integers(1_000_000, 500_000_000, n)
    rec["last_token_ns"] = rec["first_token_ns"] + rng.integers(1_000_000, 900_000_000, n)
    rec["done_ns"] = rec["last_token_ns"] + 10
    rec["output_tokens"] = rng.integers(1, 300, n)
    rec["error_kind"] = np.where(rng.random(n) < 0.07, 1, 0)
    rec["agent_id"] = rng.integers(0, 16, n)
    return rec


def test_the_meter_is_incremental_and_closes_exactly():
    rng = np.random.default_rng(1)
    rec = _random_records(rng)
    n = len(rec)
    start, end = 2_000_000_000, 7_000_000_000
    whole = ap.measure(rec, window_start_ns=start, window_end_ns=end)
    meter = WindowMeter(start, agents=16)
    order = rng.permutation(n)
    for chunk in np.array_split(order, 37):  # batches in any order, before the window is closed
        meter.add(rec[np.sort(chunk)])
    meter.close(end)
    assert _same(meter.stats().to_dict(), whole.to_dict(), rel=1e-12)  # sums in another order
    sel = rec[(rec["scheduled_ns"] >= start) & (rec["scheduled_ns"] < end)]
    assert whole.requests == len(sel) and whole.requests_failed == int((sel["error_kind"] != 0).sum())
    ok = sel[sel["error_kind"] == 0]
    assert whole.ttft_s["p50"] == pytest.approx(np.percentile((ok["first_token_ns"] - ok["scheduled_ns"]) / 1e9, 50))


def test_a_long_windows_columns_move_to_disk_and_judge_the_same(monkeypatch):
    """A window that passes SPILL_ROWS keeps at most that many rows per column in memory (the rest
    in its temporary files) and is judged exactly as one kept whole; the live figures are the
    running counts and the recent rows."""
    measure_module = sys.modules["agentperf_native.measure"]  # the package's `measure` is the function

    rng = np.random.default_rng(2)
    rec = _random_records(rng)
    start, end = 2_000_000_000, 7_000_000_000
    whole = ap.measure(rec, window_start_ns=start, window_end_ns=end, agents=16)
    monkeypatch.setattr(measure_module, "SPILL_ROWS", 256)
    meter = WindowMeter(start, agents=16)
    for chunk in np.array_split(np.arange(len(rec)), 50):
        meter.add(rec[chunk])
        assert all(len(col.recent) < 256 for col in meter._cols.values())
    live = meter.live()
    assert live["recent_only"] and live["requests"] == meter.requests
    assert live["requests_failed"] == int((rec[rec["scheduled_ns"] >= start]["error_kind"] != 0).sum())
    assert meter._cols["sched"].spilled > 0
    meter.close(end)
    assert _same(meter.stats().to_dict(), whole.to_dict(), rel=1e-12)
