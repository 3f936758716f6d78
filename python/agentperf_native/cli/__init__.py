"""The ``agentperf-native`` command: parse, call the library, print. No logic lives here.

One module per command: ``run``, ``report``, ``serve_sim``, ``trajectories``, ``power``, ``microbench``.
"""

from __future__ import annotations

import click

from .. import __version__
from .microbench import microbench
from .power import power
from .report import report
from .run import run
from .serve_sim import serve_sim
from .trajectories import trajectories


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentperf-native")
def main() -> None:
    """Replay agent trajectories against an OpenAI-compatible server and measure what it sustains."""


for command in (run, report, serve_sim, trajectories, power, microbench):
    main.add_command(command)

if __name__ == "__main__":
    main()
