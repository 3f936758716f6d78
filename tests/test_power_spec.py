"""--power parsing and the choice of a sampler."""

from __future__ import annotations

import pytest

from agentperf_native.power import ConstantSampler, PowerSpec, PrometheusSampler, choose_sampler, parse_power_spec
from agentperf_native.power.amdsmi import AmdSmiSampler
from agentperf_native.power.nvml import NvmlSampler


@pytest.mark.parametrize("spec, want", [
    ("auto", PowerSpec("auto")),
    ("none", PowerSpec("none")),
    ("NVML", PowerSpec("nvml")),
    ("nvml:0,1", PowerSpec("nvml", devices=(0, 1))),
    ("nvml:GPU-5f3c9a2e-1111-2222-3333-444455556666", PowerSpec("nvml", devices=("GPU-5f3c9a2e-1111-2222-3333-444455556666",))),
    ("nvml:3, GPU-abc", PowerSpec("nvml", devices=(3, "GPU-abc"))),
    ("amdsmi", PowerSpec("amdsmi")),
    ("amdsmi:2", PowerSpec("amdsmi", devices=(2,))),
    ("prometheus:http://gpu-node-1:9400/metrics", PowerSpec("prometheus", urls=("http://gpu-node-1:9400/metrics",))),
    ("sim", PowerSpec("sim")),
    ("sim:http://127.0.0.1:8000/metrics", PowerSpec("sim", urls=("http://127.0.0.1:8000/metrics",))),
    ("constant:700", PowerSpec("constant", watts=700.0)),
    ("constant:700W", PowerSpec("constant", watts=700.0)),
    ("constant:1000.5x8", PowerSpec("constant", watts=1000.5, count=8)),
])
def test_good_specs(spec, want):
    assert parse_power_spec(spec) == want


def test_several_prometheus_endpoints_combine():
    p = parse_power_spec(["prometheus:http://a:9400/metrics", "prometheus:http://b:9400/metrics"])
    assert p == PowerSpec("prometheus", urls=("http://a:9400/metrics", "http://b:9400/metrics"))


@pytest.mark.parametrize("spec, problem", [
    ("", "empty"),
    ("gpu", "unknown source 'gpu'"),
    ("auto:1", "auto takes no argument"),
    ("none:x", "none takes no argument"),
    ("nvml:", "an empty device list"),
    ("nvml:0,,1", "an empty device"),
    ("nvml:first", "'first' is not a GPU index or a GPU-… UUID"),
    ("nvml:0,0", "listed twice"),
    ("amdsmi:GPU-abc", "'GPU-abc' is not a GPU index"),
    ("prometheus", "prometheus needs a URL"),
    ("prometheus:gpu-node-1:9400", "is not an http(s):// URL"),
    ("prometheus:ftp://x/metrics", "is not an http(s):// URL"),
    ("constant", "constant needs the watts"),
    ("constant:lots", "'lots' is not a number of watts"),
    ("constant:-5", "positive"),
    ("constant:0", "positive"),
    ("constant:nan", "positive"),
    ("constant:700x0", "is not a count of accelerators"),
    ("constant:700xmany", "is not a count of accelerators"),
    (["nvml", "prometheus:http://a/metrics"], "only prometheus:URL"),
    (["nvml:0", "nvml:1"], "only prometheus:URL"),
    (["prometheus:http://a/metrics", "prometheus:http://a/metrics"], "given twice"),
    ([], "no source given"),
])
def test_bad_specs_name_the_problem_and_the_forms(spec, problem):
    with pytest.raises(ValueError) as e:
        parse_power_spec(spec)
    msg = str(e.value)
    assert problem in msg
    assert "accepted: auto, none, nvml" in msg and "prometheus:URL" in msg and "constant:WATTS" in msg


def test_choices_build_samplers_without_loading_libraries():
    c = choose_sampler("nvml:0,GPU-x")
    assert isinstance(c.sampler, NvmlSampler) and c.sampler.selection == [0, "GPU-x"] and not c.sampler.devices
    assert isinstance(choose_sampler("amdsmi:1").sampler, AmdSmiSampler)
    c = choose_sampler(["prometheus:http://a:9400/metrics", "prometheus:http://b:9400/metrics"], interval_s=0.5)
    assert isinstance(c.sampler, PrometheusSampler) and c.sampler.urls == ["http://a:9400/metrics", "http://b:9400/metrics"]
    assert c.sampler.interval_s == 0.5 and c.sampler.boundary == "gpu"
    c = choose_sampler("constant:700", accelerators=8)
    assert isinstance(c.sampler, ConstantSampler) and c.sampler.count == 8 and "700 W × 8" in c.reason
    assert choose_sampler("constant:700x4", accelerators=8).sampler.count == 4
    assert choose_sampler("none").sampler is None


def test_sim_needs_a_url():
    c = choose_sampler("sim", sim_metrics_url="http://127.0.0.1:9/metrics")
    assert c.sampler.boundary == "simulated" and c.sampler.source == "sim"
    with pytest.raises(ValueError, match="give sim:URL"):
        choose_sampler("sim")


def test_auto_prefers_the_embedded_simulator():
    def never():
        raise AssertionError("GPU detection must not run when the simulator is embedded")

    c = choose_sampler("auto", sim_metrics_url="http://127.0.0.1:9/metrics", detect=never)
    assert c.sampler.boundary == "simulated" and "simulator" in c.reason and "\n" not in c.reason


def test_auto_without_a_gpu_is_none_and_says_why():
    c = choose_sampler("auto", detect=lambda: None)
    assert c.sampler is None and "no power measured" in c.reason and "\n" not in c.reason


def test_auto_picks_the_library_that_saw_gpus():
    c = choose_sampler("auto", detect=lambda: ("amdsmi", 8))
    assert isinstance(c.sampler, AmdSmiSampler) and "amdsmi sees 8 GPU(s)" in c.reason
