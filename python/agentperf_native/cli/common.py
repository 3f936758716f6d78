"""What the commands share: the duration parameter type and number formatting."""

from __future__ import annotations

import click

from ..durations import parse_duration


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):  # type: ignore[override]
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


DURATION = Duration()


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.0f}ms"


def fmt_num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"
