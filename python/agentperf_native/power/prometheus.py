"""Accelerator power from Prometheus text endpoints: a DCGM-exporter on each GPU node (when the
client is not on the GPU host), any exporter publishing the same metrics, and the built-in
simulator's ``/metrics`` (boundary ``simulated``).

Per device, the energy counter ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ) is preferred; without
it, ``DCGM_FI_DEV_POWER_USAGE`` (W) samples are integrated. Both names, and label filters, are
parameters. A device is identified by its endpoint and its ``UUID`` / ``gpu`` / ``Hostname``
labels. Each endpoint is scraped every ``interval_s``; a reading is stamped at the midpoint of its
fetch. The exporter's own collection interval (dcgm-exporter ``-c``, 30 s by default) bounds the
time resolution: set it to 1 s or less; the windows say how often the counter actually moved.

The text format is parsed here (only the two metric lines are needed), so the runtime needs no
Prometheus library. The HTTP fetch is a parameter (``fetch(url, timeout_s) -> str``) so another
client can be plugged in.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from .sampler import Device, PowerSampler, PowerUnavailable, Reading, _one_line, now_ns

ENERGY_METRIC = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
POWER_METRIC = "DCGM_FI_DEV_POWER_USAGE"
#: Labels that identify a device, in order of preference (DCGM-exporter's names).
DEVICE_LABELS = ("UUID", "gpu", "Hostname")

Fetch = Callable[[str, float], str]


def urllib_fetch(url: str, timeout_s: float) -> str:
    """GETs ``url`` and returns the body as text (the default fetch)."""
    req = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (user-given URL)
        return resp.read().decode("utf-8", "replace")


@dataclass(frozen=True)
class Sample:
    """One line of the text format: ``name{labels} value``."""

    name: str
    labels: Mapping[str, str]
    value: float


def _parse_labels(text: str, i: int) -> tuple[dict[str, str], int]:
    """Parses ``{a="x",b="y"}`` starting at ``text[i] == '{'``; returns the labels and the index
    after the closing brace."""
    labels: dict[str, str] = {}
    i += 1
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i < n and text[i] == "}":
            return labels, i + 1
        eq = text.index("=", i)
        key = text[i:eq].strip()
        i = eq + 1
        while text[i] in " \t":
            i += 1
        if text[i] != '"':
            raise ValueError(f"label {key!r} has no quoted value")
        i += 1
        out = []
        while text[i] != '"':
            c = text[i]
            if c == "\\":
                i += 1
                c = {"n": "\n", "\\": "\\", '"': '"'}.get(text[i], "\\" + text[i])
            out.append(c)
            i += 1
        labels[key] = "".join(out)
        i += 1
    raise ValueError("unterminated label set")


def parse_text(text: str, names: Iterable[str]) -> list[Sample]:
    """The samples of the metrics named ``names`` in a Prometheus text exposition (a counter's
    ``_total`` form counts as its name). Malformed lines of other metrics are skipped unread."""
    names = list(names)
    wanted = set(names) | {n + "_total" for n in names}
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        end = 0
        while end < len(line) and line[end] not in "{ \t":
            end += 1
        name = line[:end]
        if name not in wanted:
            continue
        try:
            labels: dict[str, str] = {}
            rest_at = end
            if end < len(line) and line[end] == "{":
                labels, rest_at = _parse_labels(line, end)
            value = float(line[rest_at:].split()[0])
        except (ValueError, IndexError):
            continue
        base = name[:-6] if name.endswith("_total") and name[:-6] in names else name
        out.append(Sample(base, labels, value))
    return out


class PrometheusSampler(PowerSampler):
    """Accelerators behind one or more Prometheus text endpoints (one per node).

    ``label_filter``: labels a sample must carry with these exact values (e.g. ``{"gpu": "0"}``,
    ``{"Hostname": "node-3"}``). ``energy_metric`` / ``power_metric``: names to read (either may be
    None). ``boundary``: ``gpu`` for DCGM (NVML's GPU + memory), ``simulated`` for the simulator.
    """

    source = "prometheus"

    def __init__(self, urls: Sequence[str], *, interval_s: float = 1.0, timeout_s: float = 2.0,
                 energy_metric: str | None = ENERGY_METRIC, power_metric: str | None = POWER_METRIC,
                 label_filter: Mapping[str, str] | None = None, fetch: Fetch = urllib_fetch,
                 boundary: str = "gpu", source: str | None = None, **kw: Any) -> None:
        super().__init__(interval_s=interval_s, boundary=boundary, **kw)
        if not urls:
            raise ValueError("prometheus: at least one URL")
        if energy_metric is None and power_metric is None:
            raise ValueError("prometheus: an energy metric, a power metric or both")
        if source:
            self.source = source
        self.urls = list(urls)
        self.timeout_s = timeout_s
        self.energy_metric = energy_metric
        self.power_metric = power_metric
        self.label_filter = dict(label_filter or {})
        self.fetch = fetch
        self._keys: dict[tuple[str, ...], int] = {}
        self._unknown: set[tuple[str, ...]] = set()

    def _names(self) -> list[str]:
        return [n for n in (self.energy_metric, self.power_metric) if n]

    def _key(self, url: str, labels: Mapping[str, str]) -> tuple[str, ...]:
        return (url,) + tuple(labels.get(k, "") for k in DEVICE_LABELS)

    def _scrape(self, url: str) -> tuple[int, list[Sample]]:
        t0 = now_ns()
        text = self.fetch(url, self.timeout_s)
        t = (t0 + now_ns()) // 2
        samples = [s for s in parse_text(text, self._names())
                   if all(s.labels.get(k) == v for k, v in self.label_filter.items())]
        return t, samples

    def _open(self) -> list[Device]:
        devices: list[Device] = []
        has_energy: set[int] = set()
        for url in self.urls:
            try:
                _, samples = self._scrape(url)
            except Exception as e:
                raise PowerUnavailable(f"{self.source}: cannot read {url}: {_one_line(e)}") from None
            if not samples:
                want = " or ".join(self._names())
                filt = f" matching {self.label_filter}" if self.label_filter else ""
                raise PowerUnavailable(f"{self.source}: {url} has no {want} sample{filt}")
            for s in samples:
                key = self._key(url, s.labels)
                if key not in self._keys:
                    idx = len(devices)
                    self._keys[key] = idx
                    host = s.labels.get("Hostname") or (urlsplit(url).hostname or url)
                    devices.append(Device(index=idx, name=s.labels.get("modelName", ""),
                                          uuid=s.labels.get("UUID", ""), source_index=s.labels.get("gpu", ""),
                                          host=host))
                if s.name == self.energy_metric:
                    has_energy.add(self._keys[key])
        missing = [d.index for d in devices if d.index not in has_energy]
        if self.energy_metric and missing:
            self.notes.append(f"no {self.energy_metric} for device(s) {missing}: integrating {self.power_metric} samples")
        return devices

    def _read(self) -> list[Reading]:
        out: list[Reading] = []
        for url in self.urls:
            try:
                t, samples = self._scrape(url)
            except Exception as e:   # one node down leaves a gap on its devices only
                self._failures += 1
                self._last_failure = f"{url}: {_one_line(e)}"
                continue
            per: dict[int, list[float | None]] = {}
            for s in samples:
                idx = self._keys.get(self._key(url, s.labels))
                if idx is None:
                    if self._key(url, s.labels) not in self._unknown:
                        self._unknown.add(self._key(url, s.labels))
                        self.notes.append(f"a device appeared on {url} after the start and is not measured: "
                                          f"{dict(s.labels)}")
                    continue
                slot = per.setdefault(idx, [None, None])
                if s.name == self.energy_metric:
                    slot[1] = s.value / 1000.0   # mJ -> J
                else:
                    slot[0] = s.value
            out.extend(Reading(idx, t, p, e) for idx, (p, e) in per.items())
        return out

    def describe(self) -> list[str]:
        lines = []
        for d in self.devices:
            counter = "energy counter" if self._snapshot(d.index)[2] else f"{self.power_metric} samples"
            label = f"gpu {d.source_index}" if d.source_index else "device"
            lines.append(f"  device {d.index}: {label} {d.name} {d.uuid} on {d.host}; {counter}".replace("  ;", ";"))
        return lines


def sim_sampler(url: str, *, interval_s: float = 0.5, **kw: Any) -> PrometheusSampler:
    """The simulator's ``/metrics`` (the same two DCGM metrics, modelled): boundary ``simulated``."""
    return PrometheusSampler([url], interval_s=interval_s, boundary="simulated", source="sim", **kw)
