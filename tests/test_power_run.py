"""Agents per MW end to end: the simulator's dcgm-exporter metrics, scraped by the run's power
sampler on the orchestration loop, integrated over each probe's window, against the closed form."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

import agentperf_native as ap
from agentperf_native.sim.closed_form import WorkloadShape, predict
from conftest import assert_ran
from test_sim_capacity import CONTENT, OUTPUT_TOKENS, PARAMS, prompt_tokens

CLI = [sys.executable, "-m", "agentperf_native.cli"]
POWERED = replace(PARAMS, accelerators=2, idle_w=100.0, dynamic_w=400.0)


def _search_at(concurrency: int, tool_delay: str, tmp_path, window: str = "4s"):
    conv = tmp_path / "fixed.jsonl"
    conv.write_text(json.dumps({"id": "f", "system": "You are a test.", "turns": [
        {"messages": [{"role": "user", "content": CONTENT}], "output_tokens": OUTPUT_TOKENS}]}) + "\n")
    out = tmp_path / f"c{concurrency}"
    with ap.SimServer(params=POWERED) as server:
        metrics = server.url.rsplit("/v1", 1)[0] + "/metrics"
        proc = subprocess.run(CLI + ["run", "--url", server.url, "--trajectories", str(conv), "--tool-delay", tool_delay,
                                     "--start-concurrency", str(concurrency), "--max-concurrency", str(concurrency),
                                     "--tier", "1:1000", "--warmup", "2s", "--window", window, "--ramp", "1s",
                                     "--power", f"sim:{metrics}", "--idle-power", "2s", "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
    assert_ran(proc, out)
    assert "Traceback" not in proc.stderr
    # The report draws power over time with the probe's window shaded, from power.csv.
    assert (out / "power.csv").read_text().startswith("t_ns,device,power_w,energy_j")
    assert (out / "power_timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "power_timeline.png" in proc.stdout or (out / "report.html").read_text().count("data:image/png") >= 4
    return json.loads((out / "summary.json").read_text()), json.loads((out / "phases.json").read_text())["probes"]


@pytest.mark.parametrize("concurrency, tool_delay_s", [(32, 0.0), (1, 0.5)], ids=["saturated", "one-agent-idle-gaps"])
def test_probe_power_and_agents_per_mw_match_the_closed_form(concurrency, tool_delay_s, tmp_path):
    spec = "none" if tool_delay_s == 0 else f"fixed:{tool_delay_s}"
    summary, probes = _search_at(concurrency, spec, tmp_path)
    shape = WorkloadShape(prompt_tokens=prompt_tokens(), output_tokens=OUTPUT_TOKENS, tool_delay_s=tool_delay_s)
    expected_w = predict(concurrency, POWERED, shape).power_w
    (probe,) = probes
    power = probe["power"]
    assert power["boundary"] == "simulated" and len(power["devices"]) == 2, power
    assert power["mean_w"] == pytest.approx(expected_w, rel=0.02), (power["mean_w"], expected_w)
    assert power["coverage"] >= 0.95 and not power["flagged"]
    (tier,) = summary["tiers"]
    assert tier["max_agents"] == concurrency
    assert tier["agents_per_mw"] == pytest.approx(concurrency / (power["mean_w"] / 1e6), rel=1e-9)
    assert tier["agents_per_accelerator"] == pytest.approx(concurrency / 2)
    idle = summary["power"]["idle"]
    assert idle["mean_w"] == pytest.approx(2 * 100.0, rel=0.02)
