"""The plain-text tier table and validity line."""

from __future__ import annotations

import math
from typing import Any

from .load import Results

DASH = "-"


def fmt_num(v: Any, digits: int = 1) -> str:
    """A number for a table cell; ``-`` for null, ``inf`` / ``nan`` spelt out."""
    if v is None:
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == int(v) and abs(v) < 1e15 and digits <= 1:
            return f"{int(v):,}"
        return f"{v:,.{digits}f}"
    return str(v)


def tier_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the tier table (shared by the text and the HTML report)."""
    header = ["Tier", "Min speed (t/s)", "Max TTFT (s)", "Max agents", "Output (tok/s)",
              "Agents/accel", "Agents/MW", "Stop reason"]
    rows = []
    for t in results.tiers:
        rows.append([
            t.name,
            fmt_num(t.min_output_speed_tps),
            fmt_num(t.max_ttft_s),
            fmt_num(t.max_agents),
            fmt_num(t.throughput_output_tps),
            fmt_num(t.agents_per_accelerator, 2),
            fmt_num(t.agents_per_mw, 0) if t.agents_per_mw is None else f"{t.agents_per_mw:,.0f}",
            t.stop_reason or DASH,
        ])
    return header, rows


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else DASH


def validity_line(results: Results) -> str:
    """``Validity: VALID ...`` / ``Validity: INVALID (problems) ...`` / ``Validity: unknown ...``."""
    v = results.validity
    if v is None:
        n = len(results.probes)
        failed = sum(int(p.get("requests_failed") or 0) for p in results.probes)
        total = sum(int(p.get("requests") or 0) for p in results.probes)
        rate = f"; error rate so far {_pct(failed / total)}" if total else ""
        return (f"Validity: unknown - run {results.status}; "
                f"{n} probe{'s' if n != 1 else ''} in phases.json{rate}")
    verdict = "VALID" if v.get("valid") else "INVALID"
    problems = [str(p) for p in (v.get("problems") or [])]
    details = (f"error rate {_pct(v.get('error_rate'))}, under-generated {fmt_num(v.get('under_generated'))}, "
               f"context overflows {fmt_num(v.get('context_overflows'))}, "
               f"client saturated {fmt_num(v.get('client_saturated'))}, "
               f"window rules met {fmt_num(v.get('window_rules_met'))}")
    line = f"Validity: {verdict} ({details})"
    if problems:
        line += "\n  problems: " + "; ".join(problems)
    if results.status != "complete":
        line += f"\n  run {results.status}"
    return line


def phase_lines(probe: dict[str, Any]) -> list[str]:
    """A fixed phase's figures (its one probe record), as text lines."""
    t, v, e = (probe.get(k) or {} for k in ("ttft_s", "output_speed_tps", "e2e_s"))
    lines = [f"Fixed phase: {fmt_num(probe.get('concurrency'))} agents, window {fmt_num(probe.get('duration_s'), 1)} s: "
             f"{fmt_num(probe.get('requests'))} requests, {fmt_num(probe.get('requests_failed'))} failed, "
             f"{fmt_num(probe.get('output_tokens'))} output tokens ({fmt_num(probe.get('throughput_output_tps'), 1)} tok/s)",
             f"  successful requests: TTFT p50 {fmt_num(t.get('p50'), 3)} s, p95 {fmt_num(t.get('p95'), 3)} s, "
             f"p99 {fmt_num(t.get('p99'), 3)} s; output speed p25 {fmt_num(v.get('p25'), 1)}, "
             f"p50 {fmt_num(v.get('p50'), 1)} tok/s; end-to-end p50 {fmt_num(e.get('p50'), 3)} s",
             f"  SLO view (failures are violations): P95 TTFT {fmt_num(probe.get('slo_ttft_p95_s'), 3)} s, "
             f"P25 output speed {fmt_num(probe.get('slo_output_speed_p25_tps'), 1)} tok/s"]
    if probe.get("failures_by_kind"):
        lines.append("  failures: " + ", ".join(f"{k} {n}" for k, n in probe["failures_by_kind"].items()))
    c = probe.get("client") or {}
    if c:
        delay = c.get("client_added_delay_ms") or {}
        lines.append(f"  client self-check: engine worker CPU {_pct(c.get('worker_cpu_share_max'))} "
                     f"(busy {_pct(c.get('worker_busy_share_max'))}), send lateness P99 "
                     f"{fmt_num(c.get('send_lateness_p99_ms'), 2)} ms, client-added delay P99 "
                     f"{fmt_num(delay.get('p99'), 2)} ms (token times are kernel receive stamps)")
    if probe.get("not_steady_reason"):
        lines.append(f"  note: {probe['not_steady_reason']}")
    return lines


def format_tier_table(results: Results) -> str:
    """A plain-text table, one row per tier, headed by the model/endpoint and followed by the
    validity line. A fixed phase (``run --concurrency``) shows its figures instead of tiers."""
    if (results.summary or results.manifest).get("mode") == "phase":
        lines = [f"{results.model} @ {results.endpoint} - run {results.status}"]
        for p in results.probes:
            lines.extend(phase_lines(p))
        if not results.probes:
            lines.append("(no window was measured)")
        lines.append(validity_line(results))
        lines.extend(f"note: {n}" for n in results.notes)
        return "\n".join(lines)
    header, rows = tier_rows(results)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]
    right = {1, 2, 3, 4, 5, 6}  # numeric columns

    def line(cells: list[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [f"{results.model} @ {results.endpoint} - run {results.status}"]
    if results.stop_reason:
        lines[0] += f", search stopped: {results.stop_reason}"
    lines.append(line(header))
    lines.append("  ".join("-" * w for w in widths))
    if rows:
        lines.extend(line(r) for r in rows)
    else:
        lines.append("(no tiers: no probe has finished)")
    lines.append(validity_line(results))
    for note in results.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
