"""Nothing lost: a run killed with SIGKILL mid-window keeps every request that completed more than a
second before the kill, and its directory is a report (the open window measured from disk)."""

import json
import os
import signal
import subprocess
import sys
import time

import agentperf_native as ap
from agentperf_native.results import read_records

CLI = [sys.executable, "-m", "agentperf_native.cli"]


def test_a_sigkilled_run_keeps_its_records_and_report_reads_it(tmp_path):
    out = tmp_path / "res"
    conv = tmp_path / "c.jsonl"
    turns = [{"messages": [{"role": "user", "content": f"step {i}"}], "output_tokens": 10} for i in range(6)]
    conv.write_text(json.dumps({"id": "c", "turns": turns}) + "\n")
    with ap.SimServer(ttft_s=0.01, itl_s=0.002) as server:
        proc = subprocess.Popen(CLI + ["run", "--url", server.url, "--concurrency", "4", "--duration", "60s",
                                       "--tool-delay", "fixed:0.02", "--trajectories", str(conv), "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until the window is open and records are on disk
                phases = out / "phases.json"
                if (phases.exists() and "measuring" in phases.read_text() and (out / "requests.bin").exists()
                        and (out / "requests.bin").stat().st_size > 50 * ap.RECORD_DTYPE.itemsize):
                    break
                time.sleep(0.2)
            time.sleep(2.0)  # let the window run on: the kill lands mid-window
            kill_ns = ap.now_ns()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        stamps = server.stamps()
    assert not (out / "summary.json").exists()
    done_before = {s["request_id"] for s in stamps if s["complete"] and 0 < s["last_token_ns"] < kill_ns - 1_000_000_000}
    assert len(done_before) > 50
    kept = set(read_records(out)["request_id"].tolist())
    assert done_before <= kept, f"{len(done_before - kept)} requests completed > 1 s before the kill are missing"
    shown = subprocess.run(CLI + ["report", str(out)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    assert "incomplete (no summary.json)" in shown.stdout
    assert "the run ended while this window was open" in shown.stdout
