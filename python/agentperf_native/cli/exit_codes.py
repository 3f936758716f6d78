"""Exit codes: whether a command's result can be used, in one table (README, ``run --help``).

Click exits 2 on a usage error (an unknown option, a value it cannot parse); every other code is
ours. 1 is left to what nobody planned for: an uncaught exception (a bug) exits 1 with its
traceback, so a script can tell "the tool broke" from "the input was wrong".
"""

from __future__ import annotations

import click

OK = 0              #: completed, and the result is valid
BUG = 1             #: an unexpected error (a traceback): please report it
USAGE = 2           #: a wrong option or option value (click's usage errors)
INVALID = 3         #: completed, but the result is not valid (summary.json "validity"), or stopped early
COULD_NOT_RUN = 4   #: nothing was measured: bad input, unreachable endpoint, failed pre-flight
INTERRUPTED = 130   #: stopped by SIGINT or SIGTERM; the summary says "complete": false

TABLE = (
    (OK, "completed; the result is valid"),
    (BUG, "an unexpected error (a traceback): a bug, please report it"),
    (USAGE, "a wrong option or option value"),
    (INVALID, "completed, but the result is not valid (summary.json validity.problems), or stopped early:\n"
              "       every request failed for --stop-after-failing"),
    (COULD_NOT_RUN, "could not run: bad trajectories, unreachable endpoint, unknown model, failed\n"
                    "       pre-flight; nothing measured, no results directory left behind"),
    (INTERRUPTED, "interrupted (SIGINT/SIGTERM): records kept, summary.json \"complete\": false"),
)


def epilog() -> str:
    """The table for ``--help`` (``\\b`` keeps click from rewrapping it)."""
    return "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {what}" for code, what in TABLE)


class CouldNotRun(click.ClickException):
    """A command could not do its work (bad input, an endpoint that is not usable): one line that
    says what is wrong and what to do, exit code :data:`COULD_NOT_RUN`."""

    exit_code = COULD_NOT_RUN
