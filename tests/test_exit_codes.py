"""Exit codes say whether a run's result can be used; a server that goes away stops the run early;
a run that could not start leaves no results directory (and keeps a previous run's)."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import agentperf_native as ap
from agentperf_native.cli import exit_codes
from agentperf_native.cli.run import run
from agentperf_native.orchestrate import FailingStreak
from agentperf_native.results import read_records

CLI = [sys.executable, "-m", "agentperf_native.cli"]
README = Path(__file__).resolve().parents[1] / "README.md"
CONNECT, HTTP = ap.ERROR_KINDS.index("connect"), ap.ERROR_KINDS.index("http_status")
CANCELLED = ap.ERROR_KINDS.index("cancelled")


def _conv(tmp_path, turns=6, tokens=10):
    conv = tmp_path / "c.jsonl"
    conv.write_text(json.dumps({"id": "c", "turns": [{"messages": [{"role": "user", "content": f"step {i}"}],
                                                      "output_tokens": tokens} for i in range(turns)]}) + "\n")
    return str(conv)


def test_the_table_is_the_same_in_the_readme_and_in_run_help():
    documented = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|$", README.read_text(), re.M))
    assert {int(c) for c in documented} == {code for code, _ in exit_codes.TABLE}
    assert len({code for code, _ in exit_codes.TABLE}) == len(exit_codes.TABLE)
    assert exit_codes.USAGE == 2  # click's usage errors keep their code
    epilog = run.epilog
    for code, _ in exit_codes.TABLE:
        assert re.search(rf"^\s+{code}\s+\S", epilog, re.M), code


def _records(*rows):
    r = np.zeros(len(rows), dtype=ap.RECORD_DTYPE)
    for i, (done_s, kind) in enumerate(rows):
        r[i]["done_ns"], r[i]["error_kind"] = int(done_s * 1e9), kind
    return r


def test_a_failing_streak_is_due_only_when_every_request_of_its_span_failed_and_no_output_came():
    s = FailingStreak(after_s=30)
    s.progress(100)
    s.add(_records((1, 0), (2, CONNECT), (3, CONNECT)))
    assert s.since_ns == 2e9 and not s.due(31.9e9) and s.due(32e9)
    s.add(_records((33, 0)))  # a success ends the streak
    assert s.since_ns is None and not s.due(100e9)
    s.add(_records((40, HTTP), (41, CANCELLED)))  # the client's own cancellations do not count
    assert s.kinds == {"http_status": 1} and s.due(70e9)
    s.progress(101)  # output arrived (a long request still streaming): the server answers
    assert not s.due(70e9)
    s.add(_records((75, CANCELLED)))
    assert s.since_ns is None
    assert not FailingStreak(after_s=0).due(1e18)  # 0: never
    s.add(_records((80, CONNECT)))
    assert "every request of the last 30s failed (1 failures: connect 1)" in s.verdict(110e9)


def _run_until_records_then_stop_the_server(tmp_path, out, *args):
    server = ap.SimServer(ttft_s=0.01, itl_s=0.002).start()
    proc = subprocess.Popen(CLI + ["run", "--url", server.url, "--tool-delay", "fixed:0.05",
                                   "--trajectories", _conv(tmp_path), "--out", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                (out / "requests.bin").exists() and (out / "requests.bin").stat().st_size > 20 * ap.RECORD_DTYPE.itemsize):
            time.sleep(0.1)
        stopped = time.monotonic()
        server.stop()  # the server goes away mid-window
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    return proc.returncode, err, time.monotonic() - stopped


def test_a_run_whose_server_goes_away_stops_early_keeps_every_record_and_exits_invalid(tmp_path):
    out = tmp_path / "res"
    code, err, after_s = _run_until_records_then_stop_the_server(tmp_path, out, "--concurrency", "4", "--duration",
                                                                 "120s", "--stop-after-failing", "2s")
    assert after_s < 60  # not the 120 s asked for
    assert code == exit_codes.INVALID, err
    assert "Traceback" not in err
    assert "error: stopped early: every request of the last 2s failed" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"].startswith("stopped early: every request of the last 2s failed")
    assert summary["stop_reason"] == summary["stopped_early"]
    assert summary["complete"] is False and summary["interrupted"] is False
    assert summary["validity"]["valid"] is False and summary["stopped_early"] in summary["validity"]["problems"]
    assert summary["phase"]["not_steady_reason"] == FailingStreak.REASON
    records = read_records(out)
    assert len(records) == summary["records_written"]
    kinds = set(np.unique(records["error_kind"]).tolist())
    assert 0 in kinds and CONNECT in kinds  # the requests before and the failures after are all kept


def test_a_search_whose_server_goes_away_stops_early_with_the_reason_on_every_tier(tmp_path):
    out = tmp_path / "res"
    code, err, after_s = _run_until_records_then_stop_the_server(
        tmp_path, out, "--start-concurrency", "2", "--warmup", "0s", "--window", "120s", "--tier", "1:30",
        "--tier", "2:60", "--power", "none", "--stop-after-failing", "2s")
    assert after_s < 60 and code == exit_codes.INVALID, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "search" and summary["stop_reason"] == summary["stopped_early"]
    assert [t["stop_reason"] for t in summary["tiers"]] == [FailingStreak.REASON] * 2
    assert len(read_records(out)) == summary["records_written"] > 0


def test_stop_after_failing_0_runs_a_failing_phase_to_its_end_and_exits_invalid(tmp_path):
    out = tmp_path / "res"
    code, err, _ = _run_until_records_then_stop_the_server(tmp_path, out, "--concurrency", "4", "--duration", "6s",
                                                           "--stop-after-failing", "0")
    assert code == exit_codes.INVALID, err
    assert "the result is not valid (exit code 3): error rate" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] is None and summary["complete"] is True
    assert summary["phase"]["duration_s"] == 6.0 and summary["phase"]["requests_failed"] > 0


def test_a_run_that_could_not_start_keeps_the_previous_results(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "summary.json").write_text('{"previous": true}')
    proc = subprocess.run(CLI + ["run", "--url", "http://127.0.0.1:1/v1", "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == exit_codes.COULD_NOT_RUN, proc.stderr
    assert json.loads((out / "summary.json").read_text()) == {"previous": True}
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def test_an_interrupt_before_the_run_starts_exits_130_without_a_traceback_or_a_directory(tmp_path):
    """SIGINT while the tool waits for the server's model listing (before the run's own handling)."""
    import http.server
    import threading

    asked = threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.set()
            time.sleep(1.5)
            body = b'{"data": [{"id": "m"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "res"
    try:
        proc = subprocess.Popen(CLI + ["run", "--url", f"http://127.0.0.1:{server.server_address[1]}/v1",
                                       "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert asked.wait(60)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == exit_codes.INTERRUPTED, err
    assert "Traceback" not in err and "Aborted" not in err, err
    assert "interrupted: stopped at once" in err
    assert not out.exists()
