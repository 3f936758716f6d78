"""`agentperf-native microbench`: the client measuring itself against the null server (loopback)."""

import json
import subprocess
import sys
import time

import numpy as np

from agentperf_native import _core
from agentperf_native.microbench import NullModel
from agentperf_native.microbench.bench import passes
from agentperf_native.microbench.clients import request_body
from agentperf_native.sim.server import SimServer

CLI = [sys.executable, "-m", "agentperf_native.cli", "microbench"]
SMALL = ["--streams", "20", "--itl", "10ms", "--tokens", "16", "--warmup", "0.3s", "--duration", "1.5s"]
RUN_FIELDS = {"client", "streams", "protocol", "window_s", "output_events", "events_per_s", "ideal_events_per_s",
              "delivered_share", "delivered_share_resolution", "cpu_s", "events_per_cpu_s", "cpu_us_per_event",
              "client_cpu_share", "client_cpu_share_by_thread", "memory_per_stream_kib", "client_added_delay",
              "problems"}


def test_microbench_runs_end_to_end_with_the_baseline_and_writes_json_and_plot(tmp_path):
    proc = subprocess.run(CLI + SMALL + ["--baseline", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "microbench.json").read_text())
    assert (tmp_path / "microbench.png").stat().st_size > 0
    assert [r["client"] for r in doc["runs"]] == ["engine", "baseline"]
    for r in doc["runs"]:
        assert set(r) >= RUN_FIELDS, RUN_FIELDS - set(r)
        assert r["problems"] == []
        # Low load: the client keeps up, and never gets more than the server's pace (a window edge
        # can cut each stream's events by one, hence the resolution).
        assert 0.95 <= r["delivered_share"] <= 1 + r["delivered_share_resolution"]
        assert r["events_per_cpu_s"] > 0 and r["cpu_s"] > 0
        # The native client thread(s) by name: the engine's workers, or the baseline reader.
        want = "apn-worker-0" if r["client"] == "engine" else "apn-baseline-0"
        assert list(r["client_cpu_share_by_thread"]) == [want]
        d = r["client_added_delay"]
        assert d["samples"] > 0 and d["unmatched"] == 0
        assert 0 <= d["p50_ms"] <= d["p99_ms"] <= d["max_ms"] < 1000
        if r["client"] == "engine":  # its records' kernel stamps against the server's send stamps
            k = r["kernel_stamp_vs_server"]
            assert k["samples"] == d["samples"] and k["p99_ms"] <= d["p99_ms"]
    assert doc["comparison"]["h1"]["engine_over_baseline"] > 0
    assert "engine reaches" in proc.stdout


def test_lockstep_model_puts_every_event_on_the_itl_grid():
    itl = 20_000_000
    m = _core.SimModel("null", 1, ttft_ns=5_000_000, itl_ns=itl, lockstep=True)
    arrivals = [1_000_000_003, 1_000_000_000 + 7_777_777, 1_000_000_000 + 19_000_000]
    for i, a in enumerate(arrivals):
        m.submit(1, 4, a, [], i)
    events = m.advance(2_000_000_000)
    assert len(events) == 12
    assert all(at % itl == 0 for _, _, _, _, at, _, _ in events)
    # The first event is the first grid point at or after arrival + TTFT.
    firsts = {cookie: at for cookie, _, _, _, at, first, _ in events if first}
    assert firsts == {0: 1_020_000_000, 1: 1_020_000_000, 2: 1_040_000_000}
    # Without the knob each stream keeps its own phase.
    free = _core.SimModel("null", 1, ttft_ns=5_000_000, itl_ns=itl)
    free.submit(1, 4, arrivals[1], [], 1)
    assert {at % itl for *_, at, _, _ in free.advance(2_000_000_000)} == {(7_777_777 + 5_000_000) % itl}


def test_the_baseline_reader_counts_the_events_the_server_sent():
    with SimServer(ttft_s=0.0, itl_s=0.002, output_tokens=10) as server:
        reader = _core.BaselineReader(host="127.0.0.1", port=server.port, body=request_body(10), streams=5)
        reader.start()
        deadline = time.monotonic() + 10
        while reader.counters()["responses"] < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        reader.stop()
        mine = reader.drain_stamps()
        sent = {s["request_id"]: s for s in server.stamps() if s["complete"]}
    c = reader.counters()
    assert c["errors"] == 0 and reader.error() == ""
    assert len(mine) == c["responses"] >= 30
    for rid, first, last, events in mine:
        s = sent[rid]
        assert events == s["output_events"] == 10
        # Read after the server handed the event to the kernel.
        assert first >= s["first_token_ns"] and last >= s["last_token_ns"]
    # Every response's events plus the ones of the responses cut by stop().
    assert c["output_events"] >= 10 * len(mine)
    assert c["output_events"] - 10 * len(mine) < 10 * 5


def test_sweep_is_bounded_and_reports_what_it_tried(tmp_path):
    proc = subprocess.run(CLI + ["--streams", "4", "--itl", "10ms", "--tokens", "8", "--warmup", "0.2s",
                                 "--duration", "0.6s", "--sweep", "--sweep-start", "2", "--sweep-max", "4",
                                 "--sweep-runs", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    s = json.loads((tmp_path / "microbench.json").read_text())["sweep"]["h1"]
    assert 1 <= len(s["runs"]) <= 2
    assert [r["streams"] for r in s["runs"]][:1] == [2]
    for r in s["runs"]:
        assert r["passed"] == passes(r)
    passed = [r["streams"] for r in s["runs"] if r["passed"]]
    assert s["max_streams"] == (max(passed) if passed else 0)


def test_cli_errors_are_short_messages():
    cases = [
        (["--baseline", "--protocol", "h2"], "--baseline reads HTTP/1.1 streams only"),
        (["--url", "http://127.0.0.1:9/v1", "--duration", "1s"], "cannot reach http://127.0.0.1:9/v1"),
        (["--itl", "0s"], "--itl"),
        (["--streams", "0"], "--streams"),
    ]
    for args, needle in cases:
        proc = subprocess.run(CLI + args, capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0, args
        assert needle in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 4, proc.stderr


def test_ideal_rate_of_the_null_model():
    spread = NullModel(ttft_s=0.0, itl_s=0.02, tokens=64)
    assert np.isclose(spread.ideal_events_per_s(1000), 1000 * 64 / (63 * 0.02))
    # Lock-step: the next request's first event waits for the next grid point.
    step = NullModel(ttft_s=0.0, itl_s=0.02, tokens=64, lockstep=True)
    assert np.isclose(step.ideal_events_per_s(1000), 1000 / 0.02)
