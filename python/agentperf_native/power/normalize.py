"""The per-tier figures that normalise a capacity (max concurrent agents) by hardware, power and
price. Pure functions; each returns None when an input it needs is missing (or zero where it
divides), so a run without power or prices still reports the rest.

``window`` arguments take a :class:`~.sampler.PowerWindow`, its ``to_dict()`` form (``mean_w``,
``energy_j``), or a number (W for power, J for energy).
"""

from __future__ import annotations

from typing import Any, Mapping


def _field(window: Any, name: str) -> float | None:
    if window is None:
        return None
    if isinstance(window, (int, float)):
        v: Any = window
    elif isinstance(window, Mapping):
        v = window.get(name)
    else:
        v = getattr(window, name, None)
    if v is None:
        return None
    v = float(v)
    return v if v == v else None   # NaN -> None


def _ratio(num: float | int | None, den: float | int | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def mean_power_w(window: Any) -> float | None:
    """Mean accelerator power (W, all measured accelerators together) of a window."""
    return _field(window, "mean_w")


def energy_j(window: Any) -> float | None:
    """Energy (J) of a window."""
    return _field(window, "energy_j")


def agents_per_accelerator(max_agents: int | None, accelerators: int | None) -> float | None:
    """Max concurrent agents / accelerators."""
    return _ratio(max_agents, accelerators)


def agents_per_system(max_agents: int | None, accelerators: int | None,
                      accelerators_per_system: int | None) -> float | None:
    """Max agents per system of ``accelerators_per_system`` accelerators (8 for an HGX node,
    72 for an NVL72 rack): max_agents / (accelerators / accelerators_per_system)."""
    systems = _ratio(accelerators, accelerators_per_system)
    return _ratio(max_agents, systems)


def agents_per_mw(max_agents: int | None, window: Any) -> float | None:
    """Agents per megawatt: max agents / (mean accelerator power of the probe at the tier's
    maximum, in MW)."""
    w = mean_power_w(window)
    return _ratio(max_agents, None if w is None else w / 1e6)


def agents_per_dollar_hour(max_agents: int | None, price_per_hour: float | None) -> float | None:
    """Agents per $/h: max agents / the deployment's price per hour (all its accelerators)."""
    return _ratio(max_agents, price_per_hour)


def energy_per_trajectory_j(window: Any, completed_trajectories: int | None) -> float | None:
    """Joules per trajectory completed inside the window."""
    return _ratio(energy_j(window), completed_trajectories)


def energy_per_output_token_j(window: Any, output_tokens: int | None) -> float | None:
    """Joules per output token generated inside the window."""
    return _ratio(energy_j(window), output_tokens)
