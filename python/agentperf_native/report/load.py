"""Reading a results directory: ``manifest.json``, ``phases.json`` and (when the run finished)
``summary.json``.

``summary.json`` is written last, so a directory without it holds an unfinished run (still going,
crashed or killed). Such a run is still reported: every probe in ``phases.json`` is shown, and the
per-tier maxima are derived from the probes measured so far (stop reason ``incomplete``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measure import measure
from ..results.records import FILE_NAME as RECORDS
from ..results.records import read_records
from ..results.schema import TierResult, from_dict

MANIFEST = "manifest.json"
PHASES = "phases.json"
SUMMARY = "summary.json"

#: Tier names made by ``tiers.py`` end with ``<speed>t/s@<ttft>s``; used to recover the
#: thresholds when no summary (and no tier list in the manifest) says them.
_TIER_NAME = re.compile(r"(\d+(?:\.\d*)?)\s*t/s\s*@\s*(\d+(?:\.\d*)?)\s*s\s*$")


@dataclass
class Results:
    """Everything the report needs from one results directory."""

    dir: Path
    manifest: dict[str, Any]
    probes: list[dict[str, Any]]
    summary: dict[str, Any] | None
    tiers: list[TierResult]
    notes: list[str] = field(default_factory=list)  #: problems met while reading (missing files …)

    @property
    def complete(self) -> bool:
        """True only when ``summary.json`` exists and says the run completed."""
        return bool(self.summary and self.summary.get("complete") and not self.summary.get("interrupted"))

    @property
    def status(self) -> str:
        """``complete``, ``interrupted``, ``incomplete`` (summary says not complete) or
        ``incomplete (no summary.json)``."""
        if self.summary is None:
            return "incomplete (no summary.json)"
        if self.summary.get("interrupted"):
            return "interrupted"
        if not self.summary.get("complete"):
            return "incomplete"
        return "complete"

    @property
    def endpoint(self) -> str:
        return str((self.summary or {}).get("endpoint") or self.manifest.get("endpoint") or "unknown endpoint")

    @property
    def model(self) -> str:
        return str((self.summary or {}).get("model") or self.manifest.get("model") or "unknown model")

    @property
    def validity(self) -> dict[str, Any] | None:
        return (self.summary or {}).get("validity")

    @property
    def stop_reason(self) -> str | None:
        return (self.summary or {}).get("stop_reason")

    @property
    def accelerators(self) -> int | None:
        return (self.summary or {}).get("accelerators")

    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]


def _read_json(path: Path) -> Any:
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def load_results(directory: str | Path) -> Results:
    """Reads a results directory. Raises ``FileNotFoundError`` when it holds none of
    ``manifest.json``, ``phases.json``, ``summary.json``; ``ValueError`` on malformed JSON."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such results directory")
    paths = {name: d / name for name in (MANIFEST, PHASES, SUMMARY)}
    if not any(p.exists() for p in paths.values()):
        raise FileNotFoundError(f"{d}: not a results directory (no {MANIFEST}, {PHASES} or {SUMMARY})")

    notes: list[str] = []
    manifest: dict[str, Any] = {}
    if paths[MANIFEST].exists():
        manifest = _read_json(paths[MANIFEST]) or {}
    else:
        notes.append(f"{MANIFEST} is missing")

    probes: list[dict[str, Any]] = []
    if paths[PHASES].exists():
        phases = _read_json(paths[PHASES]) or {}
        if not isinstance(phases, dict) or not isinstance(phases.get("probes", []), list):
            raise ValueError(f"{paths[PHASES]}: expected {{\"probes\": [...]}}")
        probes = list(phases.get("probes") or [])
    else:
        notes.append(f"{PHASES} is missing (no probe finished)")
    probes.sort(key=lambda p: p.get("index", 0))
    _close_open_windows(d, probes, manifest, notes)

    summary: dict[str, Any] | None = None
    if paths[SUMMARY].exists():
        summary = _read_json(paths[SUMMARY])

    if summary is not None and summary.get("tiers") is not None:
        tiers = [_tier_from_summary(t) for t in summary["tiers"]]
    else:
        tiers = derive_tiers(probes, manifest)
    return Results(dir=d, manifest=manifest, probes=probes, summary=summary, tiers=tiers, notes=notes)


def _tier_from_summary(t: dict[str, Any]) -> TierResult:
    tier = from_dict(TierResult, {"min_output_speed_tps": None, "max_ttft_s": None, **t})
    tier.max_agents = int(tier.max_agents or 0)
    tier.stop_reason = str(tier.stop_reason or "")
    return tier


def _close_open_windows(d: Path, probes: list[dict[str, Any]], manifest: dict[str, Any], notes: list[str]) -> None:
    """A probe left ``measuring`` (the run was killed with its window open) is measured from the
    records on disk, by the same function, over the window up to the last record written."""
    open_probes = [p for p in probes if p.get("state") == "measuring" and p.get("window_start_ns")]
    if not open_probes or not (d / RECORDS).exists():
        return
    records = read_records(d / RECORDS)
    if records.size == 0:
        return
    turns = (manifest.get("workload") or {}).get("turns_per_conversation")
    end = int(records["done_ns"].max()) + 1
    for p in open_probes:
        stats = measure(records, window_start_ns=int(p["window_start_ns"]), window_end_ns=end,
                        turns_per_conversation=turns, agents=int(p.get("concurrency") or 0))
        p.update(stats.to_dict())
        p["window_end_ns"] = end
        origin = manifest.get("time_origin_ns")
        if isinstance(origin, int):
            p["window_end_s"] = (end - origin) / 1e9
        p["steady"], p["state"] = False, "done"
        p["not_steady_reason"] = "the run ended while this window was open (measured up to its last record)"
        p["tier_pass"] = {name: False for name in (p.get("tier_pass") or {})}
        notes.append(f"probe {p.get('index')} (c={p.get('concurrency')}) was cut short; measured from {RECORDS}")


def _manifest_tiers(manifest: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    """Thresholds by tier name from ``manifest.config.tiers`` when it lists them as objects."""
    out: dict[str, tuple[float | None, float | None]] = {}
    config = manifest.get("config") or {}
    listed = config.get("tiers") if isinstance(config, dict) else None
    if isinstance(listed, list):
        for t in listed:
            if isinstance(t, dict) and "name" in t:
                out[str(t["name"])] = (t.get("min_output_speed_tps"), t.get("max_ttft_s"))
    return out


def tier_thresholds(name: str, manifest: dict[str, Any]) -> tuple[float | None, float | None]:
    """(min P25 output speed, max P95 TTFT) of a tier known only by name."""
    listed = _manifest_tiers(manifest)
    if name in listed:
        return listed[name]
    m = _TIER_NAME.search(name)
    if m:
        return float(m.group(1)), float(m.group(2))
    return None, None


def derive_tiers(probes: list[dict[str, Any]], manifest: dict[str, Any]) -> list[TierResult]:
    """Per-tier results from the probes alone (no summary): the largest concurrency whose probe was
    steady and passed the tier so far. Stop reason ``incomplete``."""
    names: list[str] = list(_manifest_tiers(manifest))
    for p in probes:
        for name in (p.get("tier_pass") or {}):
            if name not in names:
                names.append(name)
    tiers = []
    for name in names:
        best: dict[str, Any] | None = None
        for p in probes:
            if p.get("steady") and (p.get("tier_pass") or {}).get(name):
                if best is None or p.get("concurrency", 0) > best.get("concurrency", 0):
                    best = p
        speed, ttft = tier_thresholds(name, manifest)
        agents_per_mw = None
        if best is not None:
            mean_w = (best.get("power") or {}).get("mean_w")
            if isinstance(mean_w, (int, float)) and mean_w > 0 and math.isfinite(mean_w):
                agents_per_mw = best["concurrency"] / (mean_w / 1e6)
        tiers.append(TierResult(
            name=name,
            min_output_speed_tps=speed,
            max_ttft_s=ttft,
            max_agents=int(best["concurrency"]) if best else 0,
            probe_index=best.get("index") if best else None,
            throughput_output_tps=best.get("throughput_output_tps") if best else None,
            stop_reason="incomplete",
            agents_per_accelerator=None,
            agents_per_mw=agents_per_mw,
        ))
    return tiers
