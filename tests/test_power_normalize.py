"""The per-tier normalisations: values, and None when an input is missing."""

from __future__ import annotations

import pytest

from agentperf_native.power import (ConstantSampler, agents_per_accelerator, agents_per_dollar_hour, agents_per_mw,
                                    agents_per_system, energy_per_output_token_j, energy_per_trajectory_j,
                                    mean_power_w)


def test_values():
    assert agents_per_accelerator(64, 8) == 8.0
    assert agents_per_system(64, 16, 8) == 32.0          # two HGX systems
    assert agents_per_system(4423, 72, 72) == 4423.0     # one NVL72 rack
    assert agents_per_mw(57, 700.0) == pytest.approx(57 / 0.0007)
    assert agents_per_mw(100, {"mean_w": 5600.0}) == pytest.approx(100 / 0.0056)
    assert agents_per_dollar_hour(64, 32.0) == 2.0
    assert energy_per_trajectory_j({"energy_j": 1.2e6}, 40) == 30000.0
    assert energy_per_output_token_j({"energy_j": 1.2e6}, 600_000) == 2.0
    w = ConstantSampler(700, 8).window(0, 60_000_000_000)
    assert mean_power_w(w) == 5600.0
    assert agents_per_mw(112, w) == pytest.approx(20_000.0)
    assert energy_per_trajectory_j(w, 6) == pytest.approx(5600 * 60 / 6)
    assert agents_per_mw(0, 700.0) == 0.0


@pytest.mark.parametrize("value", [
    agents_per_accelerator(None, 8), agents_per_accelerator(64, None), agents_per_accelerator(64, 0),
    agents_per_system(64, 8, None), agents_per_system(64, None, 8),
    agents_per_mw(64, None), agents_per_mw(None, 700.0), agents_per_mw(64, {"mean_w": None}),
    agents_per_mw(64, {}), agents_per_mw(64, 0.0), agents_per_mw(64, float("nan")),
    agents_per_dollar_hour(64, None), agents_per_dollar_hour(64, 0),
    energy_per_trajectory_j(None, 10), energy_per_trajectory_j({"energy_j": 5.0}, 0),
    energy_per_trajectory_j({"energy_j": 5.0}, None), energy_per_output_token_j({"energy_j": None}, 10),
])
def test_missing_inputs_give_none(value):
    assert value is None
