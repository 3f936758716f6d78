"""agentperf_native.report: loading a results directory, the tier table, the PNGs and report.html."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from agentperf_native.report import format_tier_table, load_results, report, write_html, write_plots
from agentperf_native.results import Probe, Summary, TierResult, from_dict
from agentperf_native.results import write_json as write_results_json

DATA = Path(__file__).parent / "data" / "report"
TIER_A = "dsv4-pro 20t/s@10s"
TIER_B = "dsv4-pro 60t/s@5s"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def written_by_the_writer(name: str, tmp_path: Path) -> Path:
    """A results directory whose files are written by the real writer: the fixture's values go
    through the results schema (Probe, Summary) and ``write_json``, as a run writes them."""
    src, out = DATA / name, tmp_path / name
    out.mkdir()
    write_results_json(out / "manifest.json", json.loads((src / "manifest.json").read_text()))
    probes = json.loads((src / "phases.json").read_text())["probes"]
    write_results_json(out / "phases.json", {"probes": [from_dict(Probe, p).to_dict() for p in probes]})
    if (src / "summary.json").exists():
        write_results_json(out / "summary.json", from_dict(Summary, json.loads((src / "summary.json").read_text())).to_dict())
    return out


@pytest.fixture
def complete_dir(tmp_path: Path) -> Path:
    """Ramp 1, 2, 4, 8 (8 fails both tiers), bisection 6 (not steady), 6, 3, 7 (7 fails both)."""
    return written_by_the_writer("complete", tmp_path)


@pytest.fixture
def incomplete_dir(tmp_path: Path) -> Path:
    """The same run stopped after the non-steady probe: no summary.json."""
    return written_by_the_writer("incomplete", tmp_path)


@pytest.mark.parametrize("name", ["complete", "incomplete"])
def test_fixtures_hold_only_fields_the_writer_writes(name: str):
    probes = json.loads((DATA / name / "phases.json").read_text())["probes"]
    for p in probes:
        assert set(p) <= set(Probe.__dataclass_fields__), set(p) - set(Probe.__dataclass_fields__)
    if (DATA / name / "summary.json").exists():
        summary = json.loads((DATA / name / "summary.json").read_text())
        assert set(summary) <= set(Summary.__dataclass_fields__), set(summary) - set(Summary.__dataclass_fields__)
        for t in summary["tiers"]:
            assert set(t) <= set(TierResult.__dataclass_fields__)


def tier_row(table: str, name: str) -> list[str]:
    for line in table.splitlines():
        if line.startswith(name + " "):
            return re.split(r"\s{2,}", line.strip())
    raise AssertionError(f"no row for {name!r} in\n{table}")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


# ----------------------------------------------------------------------------------------------

def test_load_complete(complete_dir: Path):
    r = load_results(complete_dir)
    assert r.status == "complete" and r.complete
    assert len(r.probes) == 8
    assert [p["index"] for p in r.probes] == list(range(8))
    assert r.model == "deepseek-v4-pro" and r.endpoint == "http://gpu-host:8000/v1"
    assert [t.name for t in r.tiers] == [TIER_A, TIER_B]
    assert [t.max_agents for t in r.tiers] == [6, 3]


def test_tier_table_lists_both_tiers(complete_dir: Path):
    table = format_tier_table(load_results(complete_dir))
    a, b = tier_row(table, TIER_A), tier_row(table, TIER_B)
    # name, speed, ttft, max agents, throughput, agents/accel, agents/MW, stop reason
    assert a[1:5] == ["20", "10", "6", "220"]
    assert a[5] == "6.00" and a[6] == "9,231"
    assert a[7] == "converged: passes at 6, fails at 7"
    assert b[1:5] == ["60", "5", "3", "150"]
    assert b[6] == "-"  # agents/MW null
    assert b[7] == "converged: passes at 3, fails at 4"
    assert "Validity: VALID" in table
    assert "error rate 0.43%" in table
    assert "run complete" in table


def test_plots_are_valid_pngs(complete_dir: Path, tmp_path: Path):
    out = tmp_path / "plots"
    paths = write_plots(load_results(complete_dir), out)
    names = [p.name for p in paths]
    assert names == ["capacity_search.png", "slo_vs_concurrency.png", "throughput.png", "agents_per_mw.png"]
    for p in paths:
        assert p.parent == out and p.exists()
        assert p.stat().st_size > 20_000, p
        w, h = png_size(p)
        assert w >= 800 and h >= 250, (p, w, h)


def test_no_power_no_power_plot(complete_dir: Path):
    summary = json.loads((complete_dir / "summary.json").read_text())
    for t in summary["tiers"]:
        t["agents_per_mw"] = None
    write_json(complete_dir / "summary.json", summary)
    names = [p.name for p in write_plots(load_results(complete_dir), complete_dir)]
    assert "agents_per_mw.png" not in names and len(names) == 3


def test_report_writes_self_contained_html(complete_dir: Path):
    table, paths = report(complete_dir)
    assert tier_row(table, TIER_A)[3] == "6"
    html_path = complete_dir / "report.html"
    assert paths[-1] == html_path and html_path.exists()
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) == 4 and all(p.parent == complete_dir for p in pngs)
    page = html_path.read_text(encoding="utf-8")
    for p in pngs:
        assert "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii") in page
    assert not re.search(r'src="(?!data:)', page), "every image must be embedded"
    # the tier table and the verdict
    assert TIER_A in page and TIER_B in page
    assert "converged: passes at 6, fails at 7" in page
    assert "Validity: VALID" in page
    # every probe row
    probes = json.loads((complete_dir / "phases.json").read_text())["probes"]
    assert page.count('<tr id="probe-') == len(probes) == 8
    for p in probes:
        m = re.search(rf'<tr id="probe-{p["index"]}"[^>]*>(.*?)</tr>', page)
        assert m, p["index"]
        row = m.group(1)
        assert f'<td class="l">{p["phase"]}</td>' in row
        assert f"<td>{p['concurrency']}</td>" in row
    assert "window rules not met: 12 trajectories completed &lt; 30" in page
    assert 'class="notsteady"' in page


def test_incomplete_dir_is_reported(incomplete_dir: Path):
    assert not (incomplete_dir / "summary.json").exists()
    r = load_results(incomplete_dir)
    assert not r.complete and r.summary is None
    assert "incomplete" in r.status
    assert len(r.probes) == 5
    table, paths = report(incomplete_dir)
    assert "incomplete" in table
    assert "Validity: unknown" in table
    # derived from the steady passing probes so far: tier A passed 4, tier B passed 2
    a, b = tier_row(table, TIER_A), tier_row(table, TIER_B)
    assert a[1:4] == ["20", "10", "4"] and a[-1] == "incomplete"
    assert b[1:4] == ["60", "5", "2"] and b[-1] == "incomplete"
    page = (incomplete_dir / "report.html").read_text(encoding="utf-8")
    assert "incomplete" in page.lower()
    assert page.count('<tr id="probe-') == 5
    assert {p.name for p in paths} >= {"capacity_search.png", "slo_vs_concurrency.png", "throughput.png",
                                        "report.html"}


def test_interrupted_and_invalid(complete_dir: Path):
    summary = json.loads((complete_dir / "summary.json").read_text())
    summary.update(complete=False, interrupted=True)
    summary["validity"].update(valid=False, problems=["error rate 7.0% > 5%"], error_rate=0.07)
    write_json(complete_dir / "summary.json", summary)
    r = load_results(complete_dir)
    assert r.status == "interrupted" and not r.complete
    table = format_tier_table(r)
    assert "Validity: INVALID" in table and "error rate 7.0% > 5%" in table and "interrupted" in table
    page = write_html(r, complete_dir, []).read_text(encoding="utf-8")
    assert "INVALID" in page and "error rate 7.0% &gt; 5%" in page


def test_no_probes_yet(tmp_path: Path):
    d = tmp_path / "fresh"
    d.mkdir()
    shutil.copy(DATA / "complete" / "manifest.json", d)
    table, paths = report(d)
    assert "incomplete" in table and "0 probes" in table
    # the tiers the manifest names, none measured yet
    assert tier_row(table, TIER_A)[3] == "0" and tier_row(table, TIER_B)[-1] == "incomplete"
    assert [p.name for p in paths] == ["report.html"]
    assert "No probe recorded" in (d / "report.html").read_text(encoding="utf-8")


def test_not_a_results_dir(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path)
    (tmp_path / "phases.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="phases.json"):
        load_results(tmp_path)


# ----------------------------------------------------------------------------------------------
# a long search (log axes), four tiers, one never passes, thresholds known only by tier name

def _probe(index: int, phase: str, c: int, tiers: dict[str, tuple[float, float]], steady: bool = True) -> dict:
    speed = 2500.0 / (1 + c / 12)
    ttft = 0.3 * (1 + (c / 40) ** 2)
    return {
        "index": index, "phase": phase, "concurrency": c, "steady": steady,
        "not_steady_reason": None if steady else "client saturated", "window_start_s": 30.0 * index,
        "window_end_s": 30.0 * index + 20, "requests": 10 * c, "requests_ok": 10 * c, "requests_failed": 0,
        "failures_by_kind": {}, "error_rate": 0.0,
        "ttft_s": {"p50": ttft / 2, "p95": ttft, "p99": ttft * 1.2},
        "output_speed_tps": {"p25": speed, "p50": speed * 1.1},
        "slo_ttft_p95_s": ttft, "slo_output_speed_p25_tps": speed, "throughput_output_tps": speed * c * 0.9,
        "trajectories_completed": 3 * c, "min_trajectories_per_agent": 3, "requests_under_generated": 0,
        "tier_pass": {n: steady and speed >= s and ttft <= t for n, (s, t) in tiers.items()},
        "power": {"mean_w": 300.0 + 2 * c, "energy_j": (300.0 + 2 * c) * 20, "method": "sampled"},
    }


def test_long_search_many_tiers(tmp_path: Path):
    tiers = {"gpt-oss-120b 100t/s@5s": (100, 5), "gpt-oss-120b 250t/s@3s": (250, 3),
             "gpt-oss-120b 500t/s@2s": (500, 2), "gpt-oss-120b 2000t/s@1s": (2000, 0.1)}
    seq = [("ramp", c) for c in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    seq += [("bisect", c) for c in (192, 160, 176, 168, 172, 170, 171)]
    probes = [_probe(i, ph, c, tiers, steady=(i != 10)) for i, (ph, c) in enumerate(seq)]
    d = tmp_path / "long"
    d.mkdir()
    write_json(d / "manifest.json", {"command": ["agentperf-native", "search"], "version": "0.1.0",
                                     "endpoint": "http://h:8000/v1", "model": "gpt-oss-120b",
                                     "config": {}, "machine": {}})
    write_json(d / "phases.json", {"probes": probes})
    r = load_results(d)  # no summary: thresholds from the tier names
    assert [(t.min_output_speed_tps, t.max_ttft_s) for t in r.tiers] == [(100, 5), (250, 3), (500, 2), (2000, 1)]
    table, paths = report(d)
    assert tier_row(table, "gpt-oss-120b 2000t/s@1s")[3] == "0"
    assert len(paths) == 5  # four PNGs (sampled power: agents/MW) and the page
    for p in paths[:-1]:
        assert png_size(p)[0] >= 800 and p.stat().st_size > 20_000
