"""The simulator's power model: dcgm-exporter metrics on /metrics, exact energy, and the closed form.

Each replica runs on ``accelerators`` simulated accelerators drawing ``idle_w`` each, plus
``dynamic_w`` while a step is in progress (null model: while a response is in flight). The energy
counter integrates that exactly, so the energy over a window divided by its length is the mean
power the closed form predicts.
"""

import json
from dataclasses import replace
import re
import socket
import threading
import time
import urllib.request

import pytest

import agentperf_native as ap
from agentperf_native.sim.closed_form import WorkloadShape, predict, simulate
from agentperf_native.sim.server import server_from_options
from agentperf_native.sim.presets import BatchingParams
from test_sim_capacity import OUTPUT_TOKENS, prompt_tokens, workload  # noqa: E402
from test_sim_capacity import PARAMS as CAPACITY_PARAMS  # noqa: E402

POWER, ENERGY = "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
SERIES = re.compile(r'^(DCGM_FI_DEV_\w+)\{gpu="(\d+)",UUID="([^"]*)",modelName="([^"]*)",Hostname="([^"]*)"\} (\S+)$')

# The capacity test's engine and workload (tests/test_sim_capacity.py): 32 agents fill its
# 16-sequence batch; here it runs on 2 accelerators.
PARAMS = replace(CAPACITY_PARAMS, accelerators=2, idle_w=120.0, dynamic_w=480.0)


capacity_workload = workload


def scrape(server) -> tuple[float, dict[str, dict[int, tuple[dict, float]]]]:
    """(the monotonic time of the scrape, {metric: {gpu: (labels, value)}}) from /metrics over HTTP."""
    t0 = time.monotonic()
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
    t1 = time.monotonic()
    out: dict[str, dict[int, tuple[dict, float]]] = {POWER: {}, ENERGY: {}}
    for line in text.splitlines():
        m = SERIES.match(line)
        if m:
            name, gpu, uuid, model, host, value = m.groups()
            out[name][int(gpu)] = ({"UUID": uuid, "modelName": model, "Hostname": host}, float(value))
    assert f"# TYPE {POWER} gauge" in text and f"# TYPE {ENERGY} counter" in text
    assert f"# HELP {ENERGY} " in text
    return (t0 + t1) / 2, out


def test_idle_accelerators_draw_idle_power_and_the_energy_advances_at_it(sim):
    server = sim(workers=2, accelerators=2, idle_w=100.0, dynamic_w=400.0, seed=7)
    t_a, a = scrape(server)
    time.sleep(1.5)
    t_b, b = scrape(server)
    # One series per accelerator: replica r, accelerator i -> gpu r * 2 + i, with dcgm-exporter's labels.
    assert sorted(b[POWER]) == sorted(b[ENERGY]) == [0, 1, 2, 3]
    for gpu, (labels, watts) in b[POWER].items():
        assert labels == {"UUID": f"SIM-7-{gpu}", "modelName": "agentperf-sim", "Hostname": socket.gethostname()}
        assert watts == 100.0
        rate_w = (b[ENERGY][gpu][1] - a[ENERGY][gpu][1]) / 1000 / (t_b - t_a)
        assert rate_w == pytest.approx(100.0, rel=0.01)
    m = server.metrics()
    assert m["power_w"] == [100.0] * 4
    assert len(m["energy_mj"]) == 4 and m["utilisation"] == [0.0, 0.0]
    assert all(e > b[ENERGY][0][1] for e in m["energy_mj"])  # a counter: it only grows


def test_saturated_batching_engine_energy_matches_the_closed_form_power(sim):
    agents = 32
    shape = WorkloadShape(prompt_tokens=prompt_tokens(), output_tokens=OUTPUT_TOKENS)
    pred = predict(agents, PARAMS, shape)
    assert pred.saturated and pred.utilisation == 1.0
    assert pred.power_w == pytest.approx(2 * (120.0 + 480.0))
    spawn_s = OUTPUT_TOKENS * pred.step_s / PARAMS.max_batch  # over one slot turnover, as a ramp does
    warm_s = agents * spawn_s + 1.0
    duration_s = warm_s + 3.0
    server = sim(params=PARAMS)
    scrapes = []

    def scraper(start: float) -> None:
        for at in (warm_s, duration_s - 0.3):
            time.sleep(max(0.0, start + at - time.monotonic()))
            scrapes.append(scrape(server))

    engine = ap.Engine(server.url, capacity_workload(), workers=1, spawn_interval_s=spawn_s)
    thread = threading.Thread(target=scraper, args=(time.monotonic(),))
    thread.start()
    _, records = ap.run_phase(engine, agents, duration_s)
    thread.join()
    assert (records["error_kind"] == 0).all()
    (t_a, a), (t_b, b) = scrapes
    assert sorted(b[ENERGY]) == [0, 1]
    total_w = sum(b[ENERGY][g][1] - a[ENERGY][g][1] for g in (0, 1)) / 1000 / (t_b - t_a)
    assert total_w == pytest.approx(pred.power_w, rel=0.02)
    assert sum(w for _, w in b[POWER].values()) == pytest.approx(pred.power_w, rel=0.02)
    assert server.metrics()["utilisation"][0] > 0.5


def test_the_null_model_is_busy_while_a_response_is_in_flight(sim):
    # One request of 20 events 10 ms apart after 100 ms: busy ~0.29 s, then idle.
    server = sim(ttft_s=0.1, itl_s=0.01, accelerators=1, idle_w=100.0, dynamic_w=300.0)
    e0 = server.metrics()["energy_mj"][0]
    body = json.dumps({"model": "agentperf-sim", "prompt": "hi", "max_tokens": 20, "ignore_eos": True}).encode()
    req = urllib.request.Request(f"{server.url}/completions", data=body, headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    urllib.request.urlopen(req, timeout=5).read()
    time.sleep(0.5)
    m = server.metrics()
    elapsed = time.monotonic() - t0
    busy_s = (m["energy_mj"][0] - e0) / 1000 / 300.0 - elapsed * 100.0 / 300.0
    assert busy_s == pytest.approx(0.29, abs=0.01)
    assert m["utilisation"][0] > 0


def test_power_settings_come_from_presets_params_and_serve_sim_options():
    s = ap.SimServer(preset="h200-class")
    assert s.power == {"accelerators": 8, "idle_w": 150.0, "dynamic_w": 550.0}
    with s:
        assert len(s.metrics()["power_w"]) == 8
        assert s.metrics_text().count(f"{POWER}{{") == 8
    assert ap.SimServer(params=PARAMS, accelerators=4).power == {"accelerators": 4, "idle_w": 120.0, "dynamic_w": 480.0}
    assert ap.SimServer().power == {"accelerators": 1, "idle_w": 150.0, "dynamic_w": 550.0}
    null = server_from_options(overrides={"accelerators": "2", "idle_w": "90"})
    assert null.kind == "null" and null.power == {"accelerators": 2, "idle_w": 90.0, "dynamic_w": 550.0}
    batching = server_from_options(preset="h200-class", overrides={"dynamic_w": "600"})
    assert batching.power == {"accelerators": 8, "idle_w": 150.0, "dynamic_w": 600.0}
    with pytest.raises(ValueError, match="accelerators"):
        ap.SimServer(accelerators=0)
    with pytest.raises(ValueError, match="idle_w"):
        ap.SimServer(idle_w=-1.0)


@pytest.mark.parametrize("agents, tool_delay_s", [(1, 2.0), (2, 2.0), (4, 2.0), (2, 0.5)])
def test_closed_form_utilisation_with_a_tool_delay_agrees_with_the_model(agents, tool_delay_s):
    shape = WorkloadShape(prompt_tokens=1000, output_tokens=OUTPUT_TOKENS, tool_delay_s=tool_delay_s)
    pred = predict(agents, PARAMS, shape)
    measured = simulate(agents, PARAMS, shape, duration_s=60.0)
    assert 0 < pred.utilisation < 1
    assert pred.utilisation == pytest.approx(measured.utilisation, rel=0.05)
    assert pred.power_w == pytest.approx(PARAMS.power_w(pred.utilisation))
