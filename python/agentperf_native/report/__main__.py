"""``python -m agentperf_native.report DIR``: print the tier table, write the plots and report.html."""

from __future__ import annotations

import sys

from . import report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m agentperf_native.report RESULTS_DIR", file=sys.stderr)
        return 2
    try:
        table, paths = report(args[0])
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table)
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
