"""The command line as users run it."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np

import agentperf_native as ap
from agentperf_native.results import read_records

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
    for key in ("requests_total", "requests_failed", "output_tokens_total", "duration_s"):
        assert key in summary
    assert set(summary["ttft_s"]) >= {"p50", "p95", "p99"}
    assert set(summary["output_speed_tps"]) >= {"p25", "p50"}
    assert summary["requests_total"] > 0 and summary["requests_failed"] == 0
    assert summary["duration_s"] == 3.0 and summary["complete"] is True
    # TTFT from the built-in server: 50 ms plus loopback.
    assert 0.05 <= summary["ttft_s"]["p50"] < 0.06
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "agentperf-sim" and len(manifest["workload"]["sha256"]) == 64
    records = read_records(out / "requests.csv")
    assert len(records) == summary["records_written"] >= summary["requests_total"]
    assert int(records["output_tokens"][records["error_kind"] == 0].sum()) >= summary["output_tokens_total"]


def test_run_reports_failures_and_goes_on(tmp_path):
    server = ap.SimServer(ttft_s=0.01, itl_s=0.001, faults={"http_503": 0.3}).start()
    try:
        out = tmp_path / "res"
        proc = subprocess.run(CLI + ["run", "--url", server.url, "--concurrency", "4", "--duration", "2s",
                                     "--out", str(out)], capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests_failed"] > 0
    assert summary["requests_failed"] < summary["requests_total"]
    assert summary["failures_by_kind"] == {"http_status": summary["requests_failed"]}
    assert "failed" in proc.stdout and "http_status" in proc.stdout


def test_run_with_an_unreachable_url_fails_fast_with_a_message(tmp_path):
    proc = subprocess.run(CLI + ["run", "--url", "http://127.0.0.1:1/v1", "--duration", "1s", "--out",
                                 str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "cannot reach http://127.0.0.1:1/v1/models" in proc.stderr


def test_run_with_a_bad_trajectory_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"turns": [{"messages": "nope"}]}\n')
    proc = subprocess.run(CLI + ["run", "--trajectories", str(bad), "--duration", "1s", "--out",
                                 str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"{bad}:1, turns[0]: field 'messages'" in proc.stderr


def test_interrupted_run_keeps_records_and_says_so(tmp_path):
    out = tmp_path / "res"
    proc = subprocess.Popen(CLI + ["run", "--concurrency", "4", "--duration", "60s", "--out", str(out),
                                   "--sim-ttft", "10ms", "--sim-itl", "1ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (out / "requests.csv").exists() and (out / "requests.csv").stat().st_size > 2000:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["complete"] is False
    assert summary["requests_total"] > 0
    records = read_records(out / "requests.csv")
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
