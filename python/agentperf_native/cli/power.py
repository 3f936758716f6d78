"""``agentperf-native power probe [SOURCE]``: what the power sources see on this machine."""

from __future__ import annotations

import click

from .common import DURATION
from .exit_codes import CouldNotRun


@click.group()
def power() -> None:
    """Accelerator power: what the tool can measure here."""


@power.command("probe")
@click.argument("source", default="auto")
@click.option("--duration", type=DURATION, default=5.0, show_default=True, help="How long to read.")
@click.option("--accelerators", type=click.IntRange(min=1), default=None, help="For constant:W.")
def probe_command(source: str, duration: float, accelerators: int | None) -> None:
    """Show the devices and counters SOURCE sees and a reading over DURATION (auto, nvml, amdsmi,
    prometheus:URL, constant:W, none)."""
    from ..power import probe

    try:
        click.echo(probe(source, duration_s=duration, accelerators=accelerators))
    except ValueError as e:
        raise CouldNotRun(str(e)) from None
