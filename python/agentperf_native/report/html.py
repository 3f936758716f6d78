"""``report.html``: one self-contained page (PNGs embedded as base64, inline CSS, no scripts)."""

from __future__ import annotations

import base64
import html as _html
import json
import os
from pathlib import Path
from typing import Any

from .load import Results
from .table import fmt_num, tier_rows, validity_line

REPORT = "report.html"

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 24px auto; max-width: 1400px; padding: 0 16px; color: #263238; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #cfd8dc; padding-bottom: 4px; }
.meta { color: #546e7a; font-size: 0.92em; }
.meta code { background: #eceff1; padding: 1px 4px; border-radius: 3px; }
.verdict { padding: 10px 14px; border-radius: 6px; margin: 12px 0; font-weight: 600; }
.verdict.valid { background: #e8f5e9; border: 1px solid #66bb6a; }
.verdict.invalid { background: #ffebee; border: 1px solid #ef5350; }
.verdict.unknown { background: #fff8e1; border: 1px solid #ffb300; }
.verdict ul { margin: 6px 0 0 0; font-weight: normal; }
table { border-collapse: collapse; font-size: 0.88em; margin: 8px 0; }
th, td { border: 1px solid #cfd8dc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #eceff1; position: sticky; top: 0; }
td.l, th.l { text-align: left; }
tr.notsteady td { color: #78909c; }
.ok { color: #2e7d32; font-weight: 600; }
.bad { color: #c62828; font-weight: 600; }
.scroll { overflow-x: auto; }
figure { margin: 16px 0; }
figure img { max-width: 100%; border: 1px solid #eceff1; }
figcaption { color: #546e7a; font-size: 0.9em; }
pre { background: #f5f7f8; padding: 8px; overflow-x: auto; font-size: 0.85em; }
"""

_CAPTIONS = {
    "capacity_search.png": "Capacity search per tier: each probe in the order it ran (exponential ramp, then "
                           "binary search); green passed the tier, red failed it, grey was not steady; the dashed "
                           "line is the tier's maximum.",
    "slo_vs_concurrency.png": "P25 output speed and P95 TTFT of each probe against its concurrency; the dashed "
                              "lines are the tiers' thresholds.",
    "throughput.png": "Output throughput of the whole deployment against concurrency; dashed lines mark each "
                      "tier's maximum.",
    "agents_per_mw.png": "Agents per megawatt of mean accelerator power at each tier's maximum.",
    "server_metrics.png": "The server's own /metrics over each probe's window: requests running and waiting, "
                          "KV-cache usage, prefix-cache hit rate (hits / queries in the window), preemptions.",
}


def _e(v: Any) -> str:
    return _html.escape(str(v), quote=True)


def _cls(left: bool) -> str:
    return ' class="l"' if left else ""


def _cell(v: Any, cls: str = "", digits: int = 2) -> str:
    if isinstance(v, float) and not isinstance(v, bool):
        text = fmt_num(v, digits)
    else:
        text = fmt_num(v)
    return f'<td class="{cls}">{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>"


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def _verdict(results: Results) -> str:
    v = results.validity
    line = validity_line(results).split("\n")[0]
    if v is None:
        return f'<div class="verdict unknown">{_e(line)}</div>'
    cls = "valid" if v.get("valid") else "invalid"
    problems = "".join(f"<li>{_e(p)}</li>" for p in (v.get("problems") or []))
    body = f'<div class="verdict {cls}">{_e(line)}'
    if problems:
        body += f"<ul>{problems}</ul>"
    if results.status != "complete":
        body += f"<div>run {_e(results.status)}</div>"
    return body + "</div>"


def _tier_table(results: Results) -> str:
    header, rows = tier_rows(results)
    if not rows:
        return "<p>No tier result: no probe has finished.</p>"
    out = ['<table class="tiers"><thead><tr>']
    out += [f"<th{_cls(i in (0, 7))}>{_e(h)}</th>" for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td{_cls(i in (0, 7))}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _probe_table(results: Results) -> str:
    probes = results.probes
    if not probes:
        return "<p>No probe recorded in phases.json.</p>"
    tiers = results.tier_names()
    for p in probes:  # tiers only the probes name
        for name in (p.get("tier_pass") or {}):
            if name not in tiers:
                tiers.append(name)
    head = ["#", "phase", "conc.", "steady", "window (s)", "requests", "ok", "failed", "failures by kind",
            "error rate", "TTFT p50 (s)", "TTFT p95 (s)", "TTFT p99 (s)", "speed p25 (t/s)", "speed p50 (t/s)",
            "SLO TTFT p95 (s)", "SLO speed p25 (t/s)", "output (tok/s)", "traj. done", "min traj./agent",
            "under-gen."]
    head += [f"pass: {t}" for t in tiers]
    head += ["power (W)", "energy (J)", "power method", "not steady because"]
    left = {"phase", "failures by kind", "power method", "not steady because"}
    out = ['<div class="scroll"><table class="probes"><thead><tr>']
    out += [f"<th{_cls(h in left)}>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for p in probes:
        steady = bool(p.get("steady"))
        idx = p.get("index")
        ttft = p.get("ttft_s") or {}
        speed = p.get("output_speed_tps") or {}
        power = p.get("power") or {}
        kinds = p.get("failures_by_kind") or {}
        w0, w1 = p.get("window_start_s"), p.get("window_end_s")
        window = f"{fmt_num(w0, 1)} - {fmt_num(w1, 1)}" if w0 is not None or w1 is not None else "-"
        cells = [
            _cell(idx), f'<td class="l">{_e(p.get("phase", "-"))}</td>', _cell(p.get("concurrency")),
            f'<td class="{"ok" if steady else "bad"}">{"yes" if steady else "no"}</td>',
            f"<td>{_e(window)}</td>",
            _cell(p.get("requests")), _cell(p.get("requests_ok")), _cell(p.get("requests_failed")),
            f'<td class="l">{_e(", ".join(f"{k}: {v}" for k, v in kinds.items()) or "-")}</td>',
            f"<td>{_e(_pct(p.get('error_rate')))}</td>",
            _cell(ttft.get("p50"), digits=3), _cell(ttft.get("p95"), digits=3), _cell(ttft.get("p99"), digits=3),
            _cell(speed.get("p25"), digits=1), _cell(speed.get("p50"), digits=1),
            _cell(p.get("slo_ttft_p95_s"), digits=3), _cell(p.get("slo_output_speed_p25_tps"), digits=1),
            _cell(p.get("throughput_output_tps"), digits=1),
            _cell(p.get("trajectories_completed")), _cell(p.get("min_trajectories_per_agent")),
            _cell(p.get("requests_under_generated")),
        ]
        tp = p.get("tier_pass") or {}
        for t in tiers:
            if t not in tp:
                cells.append("<td>-</td>")
            else:
                cells.append('<td class="ok">pass</td>' if tp[t] else '<td class="bad">fail</td>')
        cells += [_cell(power.get("mean_w"), digits=1), _cell(power.get("energy_j"), digits=0),
                  f'<td class="l">{_e(power.get("method") or "-")}</td>',
                  f'<td class="l">{_e(p.get("not_steady_reason") or "")}</td>']
        cls = "" if steady else ' class="notsteady"'
        out.append(f'<tr id="probe-{_e(idx)}"{cls}>' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = _CAPTIONS.get(Path(path).name, Path(path).name)
    return (f'<figure><img alt="{_e(Path(path).stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(cap)}</figcaption></figure>")


def write_html(results: Results, out_dir: str | Path, plots: list[Path] | tuple[Path, ...] = ()) -> Path:
    """Writes ``out_dir/report.html`` and returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = results.manifest
    command = m.get("command")
    command_text = " ".join(command) if isinstance(command, list) else (command or "")
    meta = [f"model <code>{_e(results.model)}</code>", f"endpoint <code>{_e(results.endpoint)}</code>",
            f"run <b>{_e(results.status)}</b>"]
    if results.stop_reason:
        meta.append(f"search stopped: {_e(results.stop_reason)}")
    if (results.summary or {}).get("mode"):
        meta.append(f"mode {_e(results.summary['mode'])}")
    if m.get("version"):
        meta.append(f"agentperf-native {_e(m['version'])}")
    if results.accelerators is not None:
        meta.append(f"{_e(results.accelerators)} accelerator(s)")
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>agentperf-native report - {_e(results.model)}</title><style>{_CSS}</style></head><body>",
        f"<h1>agentperf-native: {_e(results.model)} @ {_e(results.endpoint)}</h1>",
        f'<div class="meta">{" &middot; ".join(meta)}</div>',
    ]
    if command_text:
        parts.append(f'<div class="meta">command: <code>{_e(command_text)}</code></div>')
    for note in results.notes:
        parts.append(f'<div class="meta">note: {_e(note)}</div>')
    parts += ["<h2>Capacity per SLO tier</h2>", _verdict(results), _tier_table(results)]
    if results.status != "complete" and results.summary is None:
        parts.append("<p><b>Incomplete run</b>: no summary.json; the maxima above come from the probes "
                     "finished so far.</p>")
    parts.append("<h2>Plots</h2>")
    parts += [_img(p) for p in plots] if plots else ["<p>No plots (no probe has finished).</p>"]
    parts += [f"<h2>Probes ({len(results.probes)})</h2>", _probe_table(results)]
    details = {k: m[k] for k in ("config", "machine") if k in m}
    if details:
        parts.append("<h2>Configuration</h2><details><summary>manifest config and machine</summary>"
                     f"<pre>{_e(json.dumps(details, indent=2, default=str))}</pre></details>")
    parts.append("</body></html>\n")
    path = out / REPORT
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
