"""Accelerator power: one sampler interface (:class:`PowerSampler`) and its sources — NVML,
AMD-SMI, Prometheus/DCGM-exporter endpoints (and the simulator's), a declared constant — chosen
from ``--power`` by :func:`choose_sampler`; :mod:`.integrate` turns readings into energy;
:mod:`.normalize` turns a capacity and a window into agents per accelerator / system / MW / $·h.

Every timestamp is CLOCK_MONOTONIC in ns (``time.monotonic_ns()``), the engine's record clock.
"""

from .constant import ConstantSampler
from .integrate import Integral, assess, counter_energy, power_x_time, sample_energy
from .normalize import (agents_per_accelerator, agents_per_dollar_hour, agents_per_mw, agents_per_system,
                        energy_per_output_token_j, energy_per_trajectory_j, mean_power_w)
from .probe import probe
from .prometheus import PrometheusSampler, parse_text, sim_sampler
from .sampler import (TIMELINE_COLUMNS, Device, DeviceWindow, PowerSampler, PowerUnavailable, PowerWindow,
                      Reading, now_ns)
from .spec import PowerChoice, PowerSpec, choose_sampler, parse_power_spec

__all__ = [
    "ConstantSampler", "Device", "DeviceWindow", "Integral", "PowerChoice", "PowerSampler", "PowerSpec",
    "PowerUnavailable", "PowerWindow", "PrometheusSampler", "Reading", "TIMELINE_COLUMNS",
    "agents_per_accelerator", "agents_per_dollar_hour", "agents_per_mw", "agents_per_system", "assess",
    "choose_sampler", "counter_energy", "energy_per_output_token_j", "energy_per_trajectory_j",
    "mean_power_w", "now_ns", "parse_power_spec", "parse_text", "power_x_time", "probe", "sample_energy",
    "sim_sampler",
]
