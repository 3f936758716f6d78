"""Every request the tool sends (model listing, pre-flight, the load) goes through the native
client: real fronts (nginx h2c, an HTML 404 gateway), a reset at the start, cache isolation
across runs."""

import json
import subprocess
import sys

import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native.results import read_records
from agentperf_native.sim.presets import BatchingParams
from conftest import assert_ran
from peers.servers import Nginx, ResetFirst

CLI = [sys.executable, "-m", "agentperf_native.cli"]


def run_cli(*args, timeout=120):
    proc = subprocess.run(CLI + ["run", *args], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _short(tmp_path):
    conv = tmp_path / "short.jsonl"
    turns = [{"messages": [{"role": "user", "content": f"step {i} " + "x" * 300}], "output_tokens": 8}
             for i in range(4)]
    conv.write_text(json.dumps({"id": "s", "system": "You are a test agent. " * 20, "turns": turns}) + "\n")
    return str(conv)


@pytest.fixture
def sim():
    server = ap.SimServer(ttft_s=0.02, itl_s=0.002).start()
    yield server
    server.stop()


def test_protocol_h2_works_through_an_h2c_only_nginx_front(sim, tmp_path):
    front = Nginx(sim.port, tls=False, http2=True)
    try:
        out = tmp_path / "res"
        proc = run_cli("--url", front.url, "--protocol", "h2", "--concurrency", "4", "--duration", "2s",
                       "--tool-delay", "fixed:0.05", "--trajectories", _short(tmp_path), "--out", str(out))
        phase = assert_ran(proc, out)["phase"]
        assert phase["requests"] > 0 and phase["requests_failed"] == 0
        seen = front.protocols()
        assert seen and set(seen) == {"HTTP/2.0"}  # listing, pre-flight and load: all HTTP/2
        # HTTP/1.1 against the same h2c-only front: a short message that names the way out.
        h1 = run_cli("--url", front.url, "--protocol", "h1", "--concurrency", "1", "--duration", "1s",
                     "--out", str(tmp_path / "h1"))
        assert h1.returncode != 0 and "--protocol h2" in h1.stderr
    finally:
        front.stop()


def test_model_given_runs_against_a_gateway_whose_models_listing_is_an_html_404(sim, tmp_path):
    html404 = ('location = /v1/models { default_type text/html; '
               'return 404 "<html><body><h1>404 Not Found</h1></body></html>"; }')
    gw = Nginx(sim.port, tls=False, http2=False, extra=html404)
    try:
        out = tmp_path / "res"
        proc = run_cli("--url", gw.url, "--model", sim.model, "--concurrency", "2", "--duration", "1s",
                       "--tool-delay", "none", "--trajectories", _short(tmp_path), "--out", str(out))
        assert_ran(proc, out)
        manifest = json.loads((out / "manifest.json").read_text())
        assert any("answered HTTP 404 (an HTML page)" in n for n in manifest["notes"]), manifest["notes"]
        assert json.loads((out / "summary.json").read_text())["phase"]["requests_ok"] > 0
        # Without --model there is nothing to run: one line that says what to pass.
        bare = run_cli("--url", gw.url, "--concurrency", "1", "--duration", "1s", "--out", str(tmp_path / "b"))
        assert bare.returncode != 0
        assert "answered HTTP 404 (an HTML page); check that --url is the API's base URL" in bare.stderr
        assert "or pass --model when the server lists no models" in bare.stderr
    finally:
        gw.stop()


def test_a_run_against_a_server_that_resets_the_first_request_completes(sim, tmp_path):
    front = ResetFirst(sim.port)
    try:
        out = tmp_path / "res"
        proc = run_cli("--url", front.url, "--concurrency", "2", "--duration", "1s", "--tool-delay", "none",
                       "--trajectories", _short(tmp_path), "--out", str(out))
        assert_ran(proc, out)
        assert front.resets == 1 and front.connections > 1
        assert json.loads((out / "summary.json").read_text())["phase"]["requests_ok"] > 0
    finally:
        front.stop()


CACHING = BatchingParams(max_batch=16, prefill_tokens_per_s=50_000.0, step_base_s=0.002, step_per_seq_s=1e-4,
                         block_tokens=16, prefix_cache_tokens=2_000_000)


def _first_turn_cached(out) -> list[int]:
    r = read_records(out)
    r = r[r["error_kind"] == 0]
    firsts = []
    for agent in np.unique(r["agent_id"]):
        mine = r[r["agent_id"] == agent]
        firsts.append(int(mine["cached_tokens"][np.argmin(mine["scheduled_ns"])]))
    return firsts


def test_a_repeated_run_with_the_same_seed_never_meets_its_own_cache(tmp_path):
    conv = _short(tmp_path)
    with ap.SimServer(params=CACHING) as server:
        args = ["--url", server.url, "--concurrency", "3", "--duration", "1s", "--tool-delay", "none",
                "--start-turn", "first", "--seed", "5", "--trajectories", conv]
        first = run_cli(*args, "--out", str(tmp_path / "a"))
        second = run_cli(*args, "--out", str(tmp_path / "b"))
        assert_ran(first, tmp_path / "a")
        assert_ran(second, tmp_path / "b")
        nonce = json.loads((tmp_path / "a" / "manifest.json").read_text())["run_nonce"]
        assert nonce != json.loads((tmp_path / "b" / "manifest.json").read_text())["run_nonce"]
        # The same nonce replays the first run's prefixes: that run does hit the cache (the check bites).
        replay = run_cli(*args, "--run-nonce", nonce, "--out", str(tmp_path / "c"))
        assert_ran(replay, tmp_path / "c")
    assert _first_turn_cached(tmp_path / "b") == [0, 0, 0]
    assert all(c > 0 for c in _first_turn_cached(tmp_path / "c"))
