"""Reports of a results directory: the tier table (text), PNG plots and a self-contained HTML page.

>>> from agentperf_native.report import report
>>> table, paths = report("results/run1")   # writes the PNGs and report.html into results/run1
>>> print(table)

``python -m agentperf_native.report DIR`` does the same from the shell.
"""

from __future__ import annotations

from pathlib import Path

from .html import write_html
from .load import Results, TierResult, load_results
from .plots import write_plots
from .table import format_tier_table

__all__ = ["Results", "TierResult", "format_tier_table", "load_results", "report", "write_html", "write_plots"]


def report(directory: str | Path) -> tuple[str, list[Path]]:
    """Loads ``directory``, writes its plots and ``report.html`` into it, and returns the tier table
    text and the paths written (the PNGs, then the HTML page)."""
    results = load_results(directory)
    table = format_tier_table(results)
    plots = write_plots(results, results.dir)
    page = write_html(results, results.dir, plots)
    return table, [*plots, page]
