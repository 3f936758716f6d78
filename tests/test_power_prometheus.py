"""The Prometheus source against real HTTP endpoints on 127.0.0.1 serving DCGM-exporter metrics
made with prometheus-client: two GPUs at known wattages, their energy counters computed from
time.monotonic so the truth is exact."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402

from agentperf_native.power import (PowerUnavailable, PrometheusSampler, agents_per_mw, choose_sampler,  # noqa: E402
                                    now_ns, parse_text, probe)

S = 1_000_000_000
WATTS = {"0": 300.0, "1": 450.0}
TRUTH_W = sum(WATTS.values())


class FakeDcgm:
    """What dcgm-exporter publishes for two GPUs: the energy counter (mJ, counting since an
    arbitrary driver load) and the power gauge (W)."""

    def __init__(self, host: str, watts: dict[str, float] = WATTS, *, energy: bool = True, power: bool = True):
        self.host, self.watts, self.energy, self.power = host, watts, energy, power
        self.t0 = time.monotonic() - 1234.5

    def collect(self):
        now = time.monotonic()
        labels = ["gpu", "UUID", "device", "modelName", "Hostname"]
        e = CounterMetricFamily("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy (mJ)", labels=labels)
        p = GaugeMetricFamily("DCGM_FI_DEV_POWER_USAGE", "Power draw (W)", labels=labels)
        for gpu, w in self.watts.items():
            lv = [gpu, f"GPU-{self.host}-{gpu}", f"nvidia{gpu}", "NVIDIA H200", self.host]
            e.add_metric(lv, w * (now - self.t0) * 1000.0)
            p.add_metric(lv, w)
        if self.energy:
            yield e
        if self.power:
            yield p


@pytest.fixture
def endpoint():
    servers = []

    def make(host="node-a", **kw) -> str:
        reg = prometheus_client.CollectorRegistry()
        reg.register(FakeDcgm(host, **kw))
        server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=reg)
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}/metrics"

    yield make
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def measure(sampler: PrometheusSampler, span_s: float = 2.0):
    """Runs the sampler on an event loop and returns its window over ``span_s`` seconds that
    start once it has a reading (waiting for readings, not for a nominal time)."""
    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(sampler.run(stop))
        first = await sampler.window_settled(0, 0, timeout_s=10)
        assert first is not None
        a = now_ns()
        b = a + int(span_s * S)
        w = await sampler.window_settled(a, b, timeout_s=span_s + 10)
        stop.set()
        await asyncio.wait_for(task, 10)
        return w

    return asyncio.run(main())


def test_energy_counter_within_one_percent(endpoint):
    s = PrometheusSampler([endpoint()], interval_s=0.1)
    w = measure(s)
    assert w.method == "energy_counter" and w.boundary == "gpu"
    assert len(w.devices) == 2
    assert {d.uuid for d in w.devices} == {"GPU-node-a-0", "GPU-node-a-1"}
    assert w.mean_w == pytest.approx(TRUTH_W, rel=0.01)
    assert [d.mean_w for d in w.devices] == pytest.approx([300.0, 450.0], rel=0.01)
    assert w.energy_j == pytest.approx(TRUTH_W * 2.0, rel=0.01)
    assert w.coverage == 1.0 and not w.flagged
    max_agents = 64
    assert agents_per_mw(max_agents, w) == pytest.approx(max_agents / (TRUTH_W / 1e6), rel=0.01)
    # the cross-check from the power gauge agrees
    assert [d.sampled_mean_w for d in w.devices] == pytest.approx([300.0, 450.0], rel=0.01)


def test_power_gauge_integrated_without_a_counter(endpoint):
    s = PrometheusSampler([endpoint(energy=False)], interval_s=0.1)
    w = measure(s, span_s=1.0)
    assert w.method == "integrated_samples"
    assert w.mean_w == pytest.approx(TRUTH_W, rel=0.01)
    assert any("integrating DCGM_FI_DEV_POWER_USAGE" in n for n in w.notes)


def test_two_nodes_and_a_label_filter(endpoint):
    urls = [endpoint("node-a"), endpoint("node-b", watts={"0": 500.0, "1": 500.0})]
    s = PrometheusSampler(urls, interval_s=0.1)
    w = measure(s, span_s=1.0)
    assert len(w.devices) == 4
    assert {d.uuid for d in w.devices} == {"GPU-node-a-0", "GPU-node-a-1", "GPU-node-b-0", "GPU-node-b-1"}
    assert {d.host for d in s.devices} == {"node-a", "node-b"}
    assert w.mean_w == pytest.approx(TRUTH_W + 1000.0, rel=0.01)

    only = PrometheusSampler(urls[:1], interval_s=0.1, label_filter={"gpu": "1"})
    w1 = measure(only, span_s=0.5)
    assert [d.uuid for d in w1.devices] == ["GPU-node-a-1"]
    assert w1.mean_w == pytest.approx(450.0, rel=0.01)


def test_a_failed_scrape_leaves_a_gap_the_counter_bridges(endpoint):
    from agentperf_native.power.prometheus import urllib_fetch

    calls = {"n": 0}

    def flaky(url: str, timeout_s: float) -> str:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise ConnectionResetError("scrape failed")
        return urllib_fetch(url, timeout_s)

    s = PrometheusSampler([endpoint()], interval_s=0.05, fetch=flaky)
    w = measure(s, span_s=1.0)
    assert s.failures >= 3
    assert any("scrape failed" in n for n in w.notes)
    assert w.mean_w == pytest.approx(TRUTH_W, rel=0.01)


def test_unreachable_endpoint_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]   # closed when the block ends: nothing listens there
    s = PrometheusSampler([f"http://127.0.0.1:{port}/metrics"], timeout_s=1.0)
    with pytest.raises(PowerUnavailable) as e:
        s.start()
    assert "\n" not in str(e.value) and "cannot read" in str(e.value)
    out = probe(f"prometheus:http://127.0.0.1:{port}/metrics", duration_s=0.1)
    assert "\n" not in out and "cannot read" in out


def test_endpoint_without_the_metrics_is_one_line(endpoint):
    s = PrometheusSampler([endpoint()], energy_metric="NOPE", power_metric=None)
    with pytest.raises(PowerUnavailable, match="has no NOPE sample"):
        s.start()


def test_probe_and_sim_choice(endpoint):
    url = endpoint()
    out = probe(f"prometheus:{url}", duration_s=0.3, interval_s=0.05)
    assert "2 device(s)" in out and "energy_counter" in out and "GPU-node-a-1" in out
    choice = choose_sampler("auto", sim_metrics_url=url, interval_s=0.05)
    assert choice.sampler is not None and choice.sampler.source == "sim"
    w = measure(choice.sampler, span_s=0.5)
    assert w.boundary == "simulated" and w.mean_w == pytest.approx(TRUTH_W, rel=0.01)


DCGM_TEXT = r'''# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{gpu="0",UUID="GPU-aaa",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="h1"} 1980
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-aaa",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="h1",DCGM_FI_DRIVER_VERSION="550.54.15"} 412.5
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-bbb",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="h1",pod="a,b=\"c\""} 98.25
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-aaa",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="h1"} 87654321012
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1",UUID="GPU-bbb"} 1.5e9 1700000000000
DCGM_FI_DEV_POWER_USAGE_INSTANT{gpu="0"} 500
'''


def test_parser_on_exporter_text():
    got = parse_text(DCGM_TEXT, ["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_POWER_USAGE"])
    assert [(s.name, s.labels.get("gpu"), s.value) for s in got] == [
        ("DCGM_FI_DEV_POWER_USAGE", "0", 412.5),
        ("DCGM_FI_DEV_POWER_USAGE", "1", 98.25),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "0", 87654321012.0),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "1", 1.5e9),
    ]
    assert got[1].labels["pod"] == 'a,b="c"'
    assert got[0].labels["modelName"] == "NVIDIA H100 80GB HBM3"
    # prometheus-client's counters carry _total; both spellings are the same metric
    assert parse_text("X_total{a=\"1\"} 5\nX_totally 9\n", ["X"])[0].name == "X"
    assert len(parse_text("X_total{a=\"1\"} 5\nX_totally 9\n", ["X"])) == 1
