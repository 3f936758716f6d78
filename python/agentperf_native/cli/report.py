"""``agentperf-native report DIR``: the tier table, plots and report.html of a results directory."""

from __future__ import annotations

import click

from .exit_codes import CouldNotRun


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def report(directory) -> None:
    """Print the tier table of a results directory and write its plots and report.html."""
    from ..report import report as make_report

    try:
        table, files = make_report(directory)
    except (FileNotFoundError, ValueError) as e:
        raise CouldNotRun(str(e)) from None
    click.echo(table)
    for f in files:
        click.echo(f"wrote {f}")
