"""The command line as users run it."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native.cli.run import CONVERT, FIELD_OF, run
from agentperf_native.results import Probe, read_records
from agentperf_native.runner import RunConfig

CLI = [sys.executable, "-m", "agentperf_native.cli"]


def test_run_on_the_embedded_default_writes_a_results_directory(tmp_path):
    out = tmp_path / "res"
    proc = subprocess.run(CLI + ["run", "--concurrency", "8", "--duration", "3s", "--out", str(out),
                                 "--sim-ttft", "50ms", "--sim-itl", "2ms"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "built-in simulated server" in proc.stderr
    assert "agents 8/8" in proc.stderr  # the progress line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "phase" and summary["complete"] is True
    phase = summary["phase"]
    # A fixed phase writes the same probe record as a search, to phases.json too.
    assert json.loads((out / "phases.json").read_text())["probes"] == [phase]
    assert set(phase) >= set(Probe.__dataclass_fields__)
    assert set(phase["ttft_s"]) >= {"p50", "p95", "p99"}
    assert set(phase["output_speed_tps"]) >= {"p25", "p50"}
    assert phase["requests"] > 0 and phase["requests_failed"] == 0
    assert phase["duration_s"] == 3.0 and phase["phase"] == "fixed" and phase["steady"]
    # TTFT from the built-in server: 50 ms plus loopback.
    assert 0.05 <= phase["ttft_s"]["p50"] < 0.06
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "agentperf-sim" and len(manifest["workload"]["sha256"]) == 64
    records = read_records(out)
    assert len(records) == summary["records_written"] >= phase["requests"]
    assert int(records["output_tokens"][records["error_kind"] == 0].sum()) >= phase["output_tokens"]
    # report DIR on a fixed phase shows its figures.
    shown = subprocess.run(CLI + ["report", str(out)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"Fixed phase: 8 agents, window 3 s: {phase['requests']:,} requests" in shown.stdout


def test_run_reports_failures_and_goes_on(tmp_path):
    server = ap.SimServer(ttft_s=0.01, itl_s=0.001, faults={"http_503": 0.3}).start()
    try:
        out = tmp_path / "res"
        proc = subprocess.run(CLI + ["run", "--url", server.url, "--concurrency", "4", "--duration", "2s",
                                     "--out", str(out)], capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    # completed, with every record, but 30 % failed: not a valid result, and the exit code says so
    assert proc.returncode == 3, proc.stderr
    assert "the result is not valid (exit code 3): error rate up to" in proc.stderr
    phase = json.loads((out / "summary.json").read_text())["phase"]
    assert phase["requests_failed"] > 0
    assert phase["requests_failed"] < phase["requests"]
    assert phase["failures_by_kind"] == {"http_status": phase["requests_failed"]}
    assert "failed" in proc.stdout and "http_status" in proc.stdout


def test_run_with_an_unreachable_url_fails_fast_with_a_message(tmp_path):
    proc = subprocess.run(CLI + ["run", "--url", "http://127.0.0.1:1/v1", "--duration", "1s", "--out",
                                 str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4  # could not run
    assert "cannot reach http://127.0.0.1:1/v1/models" in proc.stderr and "is the server running" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()  # no empty results directory left behind


def test_run_with_a_bad_trajectory_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"turns": [{"messages": "nope"}]}\n')
    proc = subprocess.run(CLI + ["run", "--trajectories", str(bad), "--duration", "1s", "--out",
                                 str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4
    assert f"{bad}:1, turns[0]: field 'messages'" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_keeps_records_and_says_so(tmp_path, sig):
    out = tmp_path / "res"
    proc = subprocess.Popen(CLI + ["run", "--concurrency", "4", "--duration", "60s", "--out", str(out),
                                   "--sim-ttft", "10ms", "--sim-itl", "1ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (out / "requests.bin").exists() and (out / "requests.bin").stat().st_size > 2000:
            break
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["complete"] is False
    assert summary["phase"]["requests"] > 0 and summary["phase"]["not_steady_reason"] == "interrupted"
    assert f"stopped by {sig.name}" in summary["notes"]
    records = read_records(out)
    assert len(records) == summary["records_written"]


def test_serve_sim_prints_its_address_serves_and_stops_on_sigterm():
    proc = subprocess.Popen(CLI + ["serve-sim", "--port", "0", "--ttft", "0s", "--itl", "1ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.strip().split()[-1]
        models = json.loads(urllib.request.urlopen(url + "/models", timeout=5).read())
        assert models["data"][0]["id"] == "agentperf-sim"
        body = json.dumps({"model": "agentperf-sim", "stream": False, "max_tokens": 3,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
        assert answer["usage"]["completion_tokens"] == 3
        assert answer["choices"][0]["message"]["content"] == "tok tok tok "
        metrics = urllib.request.urlopen(url.replace("/v1", "") + "/metrics", timeout=5).read().decode()
        assert "agentperf_sim_requests_total 1" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_every_run_option_maps_to_a_run_config_field_with_the_same_default():
    defaults = RunConfig()
    for param in run.params:
        field = FIELD_OF.get(param.name, param.name)
        assert hasattr(defaults, field), f"--{param.name} has no RunConfig field"
        default = () if param.multiple else param.default
        if param.name in CONVERT:
            default = CONVERT[param.name](default)
        assert default == getattr(defaults, field), f"--{param.name}: CLI default {default!r} != RunConfig's"
