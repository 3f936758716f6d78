"""Shards: the agents split over engine processes (local, or Ray actors), driven as one engine.

Against a server of known pace the answer must not depend on how the agents are split; merged
histograms must be the histogram of every value; a shard's clock is mapped onto the driver's; a
shard killed mid-probe leaves a run that finishes and says why; ``serve-sim --processes`` shares
one port between processes.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import agentperf_native as ap
from agentperf_native import _core
from agentperf_native.results import read_records
from agentperf_native.shards import WorkloadRecipe, auto_shards, partition, shard_seed, start_shards
from agentperf_native.shards.clock import UNCERTAINTY_LIMIT_NS, ClockSync, sync
from agentperf_native.shards.shard import Shard
from agentperf_native.shards.snapshot import histogram_from_parts, histogram_parts
from agentperf_native.results.schema import Validity
from agentperf_native.shards import run as shard_run
from agentperf_native.shards.run import shard_count
from agentperf_native.shards.spec import ShardSpec

CLI = [sys.executable, "-m", "agentperf_native.cli"]
TTFT_S, ITL_S, TOKENS = 0.1, 0.01, 21  # the null simulator's pace: speed (21 - 1) / 0.2 s = 100 tok/s


def conversations(tool_delay_s: float = 0.5):
    turn = ap.Turn(messages=[{"role": "user", "content": "hi"}], output_tokens=TOKENS, tool_delay_s=tool_delay_s)
    return [ap.Conversation(system="You are a test.", turns=[turn, turn])]


def recipe(**kw) -> WorkloadRecipe:
    return WorkloadRecipe(conversations(**kw), model="agentperf-sim")


# -- pure parts ---------------------------------------------------------------------------------
def _same_buckets(a, b) -> bool:
    """Every bucket's count, the count, the exact minimum and maximum."""
    return (np.array_equal(a.counts(), b.counts()) and a.count == b.count and a.min == b.min and a.max == b.max)


def test_merged_histograms_are_the_histogram_of_every_value():
    rng = np.random.default_rng(7)
    parts = [rng.lognormal(18, 1.0, n).astype(np.int64) for n in (5000, 1, 2, 3000)]
    whole = _core.HistogramSnapshot()
    merged = None
    for values in parts:
        h = _core.HistogramSnapshot()
        h.record_array(values)
        whole.record_array(values)
        sent = histogram_from_parts(histogram_parts(h))  # what crosses the process boundary
        assert _same_buckets(sent, h) and sent.mean == pytest.approx(h.mean, rel=1e-12)
        merged = sent if merged is None else (merged.merge(sent) or merged)
    assert _same_buckets(merged, whole)
    ps = [0, 1, 25, 50, 90, 95, 99, 99.9, 100]
    assert list(merged.percentiles(ps)) == list(whole.percentiles(ps))
    every = np.concatenate(parts)
    assert merged.mean == pytest.approx(every.mean(), rel=1e-12)


def test_partition_seeds_and_the_automatic_shard_count():
    assert partition(64, 2) == [32, 32] and partition(7, 3) == [3, 2, 2] and partition(1, 2) == [1, 0]
    seeds = [shard_seed(5, i) for i in range(8)]
    assert seeds[0] == 5 and len(set(seeds)) == 8  # shard 0 replays as one engine does; the others differ
    assert auto_shards(16_000, "h1", 100) == 1 and auto_shards(25_000, "h1", 100) == 2
    assert auto_shards(100_000, "h2", 100) == 1  # 1,000 connections
    assert shard_count("auto", peak_agents=40_000, protocol="h1", streams_per_connection=100) == 3
    assert shard_count(4, peak_agents=1, protocol="h1", streams_per_connection=100) == 4


def _slow_clock() -> int:
    """A shard whose every answer takes 6 ms each way: its offset is known to ±6 ms only."""
    time.sleep(0.006)
    t = ap.now_ns()
    time.sleep(0.006)
    return t


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_clock_offset_is_found_within_half_the_fastest_round_trip():
    behind_s = 5.0  # a shard whose monotonic clock reads 5 s less than the driver's (another host)
    state = sync(ClockSync(), lambda: ap.now_ns() - int(behind_s * 1e9), same_host=False)
    assert abs(state.offset_ns - behind_s * 1e9) <= state.uncertainty_ns + 1000
    assert 0 < state.uncertainty_ns < UNCERTAINTY_LIMIT_NS and not state.flagged

    far = sync(ClockSync(), _slow_clock, same_host=False)
    assert far.uncertainty_ns >= 6_000_000 and far.flagged
    assert abs(far.offset_ns) <= far.uncertainty_ns + 1_000_000
    same = sync(ClockSync(), lambda: ap.now_ns(), same_host=True)
    assert same.offset_ns == 0 and same.uncertainty_ns == 0  # one machine, one clock: nothing applied


def test_a_shard_maps_its_records_and_the_window_between_its_clock_and_the_drivers(sim):
    server = sim(ttft_s=0.02, itl_s=0.002)
    r = recipe(tool_delay_s=0.1)
    offset = 7 * 10**9  # the driver's clock reads 7 s more than this shard's
    shard = Shard(ShardSpec(index=1, count=3, endpoint=ap.Endpoint.parse(server.url), recipe=r,
                            digest=r.encode().digest, engine={"workers": 1, "seed": 3}))
    shard.set_offset(offset)
    shard.set_concurrency(4)
    local_start = ap.now_ns()
    shard.start()
    time.sleep(1.0)
    shard.set_concurrency(0)
    time.sleep(0.5)
    local_end = ap.now_ns()
    records = shard.drain()
    shard.stop()
    records = np.concatenate([records, shard.drain()])
    assert len(records) >= 8
    assert (records["scheduled_ns"] >= local_start + offset).all() and (records["done_ns"] < local_end + offset).all()
    assert set(records["shard"]) == {1} and set(records["agent_id"] % 3) == {1}  # global ids: L * 3 + 1
    mid = int(np.median(records["scheduled_ns"]))  # a window given on the driver's clock
    counts = shard.window_counts(mid, local_end + offset)
    assert counts["requests"] == np.count_nonzero(records["scheduled_ns"] >= mid) > 0
    with pytest.raises(RuntimeError, match="different workload"):
        Shard(ShardSpec(index=0, count=1, endpoint=ap.Endpoint.parse(server.url), recipe=r, digest="0" * 64,
                        engine={}))


# -- the same answer however the agents are split -------------------------------------------------
def _phase(engine, agents=64, duration_s=4.0):
    probe, records = ap.run_phase(engine, agents, duration_s, warmup_s=1.0)
    return probe, records


def _check_same(reference, probe, records, shards):
    print(f"{shards} shards: TTFT p50 {probe.ttft_s['p50'] * 1e3:.2f} ms (one engine {reference.ttft_s['p50'] * 1e3:.2f}), "
          f"speed p50 {probe.output_speed_tps['p50']:.2f} tok/s ({reference.output_speed_tps['p50']:.2f})")
    assert probe.steady and probe.requests_failed == 0
    assert abs(probe.ttft_s["p50"] - reference.ttft_s["p50"]) <= 0.002, (probe.ttft_s, reference.ttft_s)
    assert probe.output_speed_tps["p50"] == pytest.approx(reference.output_speed_tps["p50"], rel=0.01)
    assert set(records["shard"]) == set(range(shards))  # records from every shard
    assert len(np.unique(records["agent_id"])) >= 64  # global agent ids: no two shards share one
    # X-Request-Id (the record's request_id) is unique across shards: each carries its shard number
    assert len(np.unique(records["request_id"])) == len(records)
    assert ((records["request_id"] >> np.uint64(48)) == records["shard"]).all()
    assert [c["shard"] for c in probe.shards] == list(range(shards))
    assert sum(c["requests"] for c in probe.shards) == probe.requests  # each shard's own clock agrees
    # The self-check counts the workers where they run: inside each shard.
    workers = set(probe.client["worker_cpu_share"])
    assert {w.split("/")[0] for w in workers} == {f"shard{i}" for i in range(shards)}, probe.client
    assert all(w.split("/")[1].startswith("apn-worker-") for w in workers)
    assert 0 < probe.client["worker_cpu_share_max"] <= 1.05


@pytest.fixture(scope="module")
def one_shard_reference():
    with ap.SimServer(ttft_s=TTFT_S, itl_s=ITL_S) as server:
        probe, records = _phase(ap.Engine(server.url, recipe().encode(), workers=1))
    assert probe.steady and probe.requests_failed == 0 and probe.requests > 100
    assert TTFT_S <= probe.ttft_s["p50"] <= TTFT_S + 0.01  # the server's pace
    assert probe.output_speed_tps["p50"] == pytest.approx((TOKENS - 1) / ((TOKENS - 1) * ITL_S), rel=0.03)
    return probe


def test_two_local_shards_measure_what_one_engine_measures(one_shard_reference):
    with ap.SimServer(ttft_s=TTFT_S, itl_s=ITL_S) as server:
        engine = start_shards(server.url, recipe(), shards=2, workers=1)
        try:
            probe, records = _phase(engine)
            pids = [h.process.pid for h in engine.handles]
            # A shard whose clock is known only to ±6 ms (a far host) is flagged in the verdict.
            engine.clocks[1] = sync(ClockSync(), _slow_clock, same_host=False)
            manifest, validity, notes = {}, Validity(), []
            shard_run.finish(engine, manifest, validity, notes)
        finally:
            engine.close()
    _check_same(one_shard_reference, probe, records, 2)
    assert all(p != os.getpid() for p in pids) and len(set(pids)) == 2
    assert not validity.valid and any(p.startswith("shard 1 ") and "5 ms" in p for p in validity.problems)
    assert manifest["shards"]["shards"][1]["clock"]["flagged"] and not manifest["shards"]["shards"][0]["clock"]["flagged"]
    assert all(s["usage"]["max_rss_bytes"] > 0 for s in manifest["shards"]["shards"])
    assert all(_gone(pid) for pid in pids)  # closed: no shard process left behind


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_two_ray_actors_measure_what_one_engine_measures(one_shard_reference, ray_cluster):
    with ap.SimServer(ttft_s=TTFT_S, itl_s=ITL_S) as server:
        engine = start_shards(server.url, recipe(), ray_address="auto", per_node=2, workers=1)
        try:
            assert engine.kind == "ray" and engine.shards == 2
            probe, records = _phase(engine)
            described = engine.describe()
        finally:
            engine.close()
    _check_same(one_shard_reference, probe, records, 2)
    assert all(s["clock"]["same_host"] and s["node_id"] for s in described["shards"])


# -- the capacity search on shards --------------------------------------------------------------
def test_a_search_on_two_shards_finds_the_closed_form_maxima():
    from test_search import _tier_with_capacity, with_runner
    from test_sim_capacity import PARAMS, SHAPE, workload

    from agentperf_native.probe import PhaseRules
    from agentperf_native.search import search
    from agentperf_native.sim.closed_form import predict

    tiers = [_tier_with_capacity(6, "A"), _tier_with_capacity(11, "B")]  # test_search finds these on one engine
    spawn_s = predict(11, PARAMS, SHAPE).cycle_s / PARAMS.max_batch
    one = workload()
    with ap.SimServer(params=PARAMS) as server:
        engine = start_shards(server.url, WorkloadRecipe(one.conversations, model="agentperf-sim"), shards=2,
                              workers=1, spawn_interval_s=spawn_s)
        try:
            rules = PhaseRules(warmup_s=0.5, window_s=3.0, drain_timeout_s=30)
            result = with_runner(engine, tiers, rules, lambda r: search(r, start=1, max_concurrency=64))
        finally:
            engine.close()
    found = {t.name: t.max_agents for t in result.tiers}
    assert found == {"A": 6, "B": 11}, [(p.concurrency, p.slo_output_speed_p25_tps, p.tier_pass) for p in result.probes]
    assert all(p.steady for p in result.probes)
    assert all(len(p.shards) == 2 for p in result.probes)


# -- a shard lost mid-probe ---------------------------------------------------------------------
def _trajectories(tmp_path):
    path = tmp_path / "short.jsonl"
    turns = [{"messages": [{"role": "user", "content": f"step {i}"}], "output_tokens": 5, "tool_delay_s": 0.2}
             for i in range(4)]
    path.write_text(json.dumps({"id": "short", "turns": turns}) + "\n")
    return path


def _wait_measuring(out, proc, probe_index, deadline):
    while time.monotonic() < deadline:
        try:
            probes = json.loads((out / "phases.json").read_text())["probes"]
            if len(probes) > probe_index and probes[probe_index]["state"] == "measuring":
                return json.loads((out / "manifest.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"probe {probe_index} never measured: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_a_shard_killed_mid_probe_leaves_a_run_that_finishes_and_says_why(tmp_path):
    out = tmp_path / "res"
    cmd = CLI + ["run", "--sim-preset", "null", "--sim-ttft", "20ms", "--sim-itl", "2ms", "--tier", "10:5",
                 "--warmup", "0.2s", "--window", "2s", "--max-concurrency", "8", "--trajectories",
                 str(_trajectories(tmp_path)), "--out", str(out), "--shards", "2", "--power", "none"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        manifest = _wait_measuring(out, proc, 1, time.monotonic() + 180)
        victim = manifest["shards"]["shards"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    # completed, but not valid: a probe lost a shard (exit code 3, the verdict names the loss)
    assert proc.returncode == 3, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert any("lost: killed by SIGKILL" in p for p in summary["validity"]["problems"]), summary["validity"]
    probes = json.loads((out / "phases.json").read_text())["probes"]
    hit = probes[1]
    assert not hit["steady"] and "shard 1" in hit["not_steady_reason"] and "SIGKILL" in hit["not_steady_reason"]
    assert [p["concurrency"] for p in probes[:5]] == [1, 2, 2, 4, 8]  # probed again, then on with shard 0
    assert all(p["steady"] for p in probes[2:]) and all(len(p["shards"]) == 1 for p in probes[2:])
    assert any("shard 1" in n for n in summary["notes"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"]["shards"][1]["alive"] is False and manifest["shards"]["losses"]
    records = read_records(out)
    assert len(records) == summary["records_written"] and set(records["shard"]) == {0, 1}  # shard 1's kept
    shown = subprocess.run(CLI + ["report", str(out)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "shard 1" in shown.stdout


def test_on_shard_loss_stop_ends_the_run_with_the_reason(tmp_path):
    out = tmp_path / "res"
    cmd = CLI + ["run", "--sim-preset", "null", "--sim-ttft", "20ms", "--sim-itl", "2ms", "--concurrency", "8",
                 "--duration", "60s", "--trajectories", str(_trajectories(tmp_path)), "--out", str(out),
                 "--shards", "2", "--power", "none", "--on-shard-loss", "stop"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        manifest = _wait_measuring(out, proc, 0, time.monotonic() + 180)
        time.sleep(1.0)
        os.kill(manifest["shards"]["shards"][0]["pid"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["complete"] is False
    assert any(n.startswith("stopped by shard 0") and "SIGKILL" in n for n in summary["notes"]), summary["notes"]
    assert "stopping the run" in stderr
    assert summary["phase"]["duration_s"] < 30 and summary["phase"]["requests"] > 0


# -- serve-sim --processes ----------------------------------------------------------------------
def test_serve_sim_processes_share_one_port_each_an_independent_replica():
    proc = subprocess.Popen(CLI + ["serve-sim", "--port", "0", "--processes", "2", "--ttft", "5ms", "--itl", "1ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.strip().split()[-1]
        port = ap.Endpoint.parse(url).port
        # Without --processes the port is not shared: a second server on it fails.
        taken = subprocess.run(CLI + ["serve-sim", "--port", str(port)], capture_output=True, text=True, timeout=60)
        assert taken.returncode != 0 and "cannot listen" in taken.stderr
        engine = ap.Engine(url, recipe(tool_delay_s=0.05).encode(), workers=1)
        probe, records = ap.run_phase(engine, 200, 2.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    ok = int(np.count_nonzero(records["error_kind"] == 0))
    assert ok == len(records) > 200
    per_process = [int(n) for n in stderr.split("per process: ")[1].split(" requests")[0].split(", ")]
    assert len(per_process) == 2 and all(n > 0 for n in per_process)  # the kernel spread the connections
    assert sum(per_process) == ok


def test_ctrl_c_stops_a_sharded_run_with_every_record_and_no_shard_left(tmp_path):
    out = tmp_path / "res"
    cmd = CLI + ["run", "--sim-preset", "null", "--sim-ttft", "20ms", "--sim-itl", "2ms", "--concurrency", "8",
                 "--duration", "60s", "--trajectories", str(_trajectories(tmp_path)), "--out", str(out),
                 "--shards", "2", "--power", "none"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        manifest = _wait_measuring(out, proc, 0, time.monotonic() + 180)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["phase"]["requests"] > 0
    records = read_records(out)
    assert len(records) == summary["records_written"] and set(records["shard"]) == {0, 1}
    assert all(_gone(s["pid"]) for s in manifest["shards"]["shards"])
