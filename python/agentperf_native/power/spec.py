"""``--power SOURCE``: the one place a power source is chosen.

Accepted forms (``--power`` may be repeated for several ``prometheus:`` endpoints, one per node)::

    auto                      the simulator's /metrics when it runs embedded, else NVML when an
                              NVIDIA GPU is visible, else AMD-SMI when an AMD GPU is, else none
    nvml | nvml:0,1 | nvml:GPU-<uuid>[,...]     NVIDIA GPUs on this host (all, or by index / UUID)
    amdsmi | amdsmi:0,1       AMD GPUs on this host (all, or by index)
    prometheus:URL            a DCGM-exporter (or any endpoint with the same metrics), e.g.
                              prometheus:http://gpu-node-1:9400/metrics
    sim | sim:URL             the simulator's /metrics (boundary "simulated")
    constant:W | constant:WxN W watts per accelerator, on N accelerators (default: --accelerators)
    none                      no power (no agents/MW)

:func:`parse_power_spec` only parses (no library is loaded); :func:`choose_sampler` builds the
sampler and says, in one line, what was chosen and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence
from urllib.parse import urlsplit

from .sampler import PowerSampler

FORMS = ("auto", "none", "nvml[:INDEX|UUID,...]", "amdsmi[:INDEX,...]", "prometheus:URL", "sim[:URL]",
         "constant:WATTS[xCOUNT]")
KINDS = ("auto", "none", "nvml", "amdsmi", "prometheus", "sim", "constant")


def _bad(spec: str, problem: str) -> ValueError:
    return ValueError(f"--power {spec!r}: {problem}; accepted: {', '.join(FORMS)}")


@dataclass(frozen=True)
class PowerSpec:
    """A parsed ``--power``: ``kind`` (one of :data:`KINDS`), and per kind the device selection
    (``nvml``/``amdsmi``: indices as int, UUIDs as str), the URLs (``prometheus``/``sim``), or the
    watts per accelerator and their count (``constant``; count None: take ``--accelerators``)."""

    kind: str
    devices: tuple[int | str, ...] = ()
    urls: tuple[str, ...] = ()
    watts: float | None = None
    count: int | None = None


@dataclass
class PowerChoice:
    """What :func:`choose_sampler` chose: the sampler (None for ``none``) and one line saying what
    and why."""

    sampler: PowerSampler | None
    reason: str
    spec: PowerSpec = field(default_factory=lambda: PowerSpec("none"))


def _url(spec: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _bad(spec, f"{url!r} is not an http(s):// URL")
    return url


def _devices(spec: str, text: str, *, uuids: bool) -> tuple[int | str, ...]:
    out: list[int | str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise _bad(spec, "an empty device in the list")
        if item.isdigit():
            out.append(int(item))
        elif uuids and (item.startswith("GPU-") or item.startswith("MIG-")):
            out.append(item)
        else:
            what = "a GPU index or a GPU-… UUID" if uuids else "a GPU index"
            raise _bad(spec, f"device {item!r} is not {what}")
    if len(set(out)) != len(out):
        raise _bad(spec, "a device is listed twice")
    return tuple(out)


def _one(spec: str) -> PowerSpec:
    s = spec.strip()
    if not s:
        raise _bad(spec, "empty")
    kind, sep, arg = s.partition(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise _bad(spec, f"unknown source {kind!r}")
    if kind in ("auto", "none"):
        if sep:
            raise _bad(spec, f"{kind} takes no argument")
        return PowerSpec(kind)
    if kind in ("nvml", "amdsmi"):
        if sep and not arg:
            raise _bad(spec, "an empty device list")
        return PowerSpec(kind, devices=_devices(spec, arg, uuids=kind == "nvml") if arg else ())
    if kind == "prometheus":
        if not arg:
            raise _bad(spec, "prometheus needs a URL (prometheus:http://host:9400/metrics)")
        return PowerSpec(kind, urls=(_url(spec, arg),))
    if kind == "sim":
        return PowerSpec(kind, urls=(_url(spec, arg),) if arg else ())
    # constant
    if not arg:
        raise _bad(spec, "constant needs the watts per accelerator (constant:700)")
    watts_text, x, count_text = arg.lower().partition("x")
    try:
        watts = float(watts_text.strip().removesuffix("w"))
    except ValueError:
        raise _bad(spec, f"{watts_text!r} is not a number of watts") from None
    if not watts > 0 or watts != watts or watts == float("inf"):
        raise _bad(spec, "the watts must be a positive number")
    count = None
    if x:
        if not count_text.strip().isdigit() or int(count_text) < 1:
            raise _bad(spec, f"{count_text!r} is not a count of accelerators (≥ 1)")
        count = int(count_text)
    return PowerSpec(kind, watts=watts, count=count)


def parse_power_spec(spec: str | Sequence[str]) -> PowerSpec:
    """Parses one ``--power`` value, or several (only ``prometheus:`` / ``sim:`` URLs combine,
    one per node). Raises :class:`ValueError` naming the problem and the accepted forms."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        raise _bad("", "no source given")
    parsed = [_one(s) for s in specs]
    if len(parsed) == 1:
        return parsed[0]
    kinds = {p.kind for p in parsed}
    if len(kinds) > 1 or kinds - {"prometheus", "sim"} or not all(p.urls for p in parsed):
        raise _bad(", ".join(specs), "only prometheus:URL (or sim:URL) sources can be given several times")
    urls = tuple(u for p in parsed for u in p.urls)
    if len(set(urls)) != len(urls):
        raise _bad(", ".join(specs), "a URL is given twice")
    return PowerSpec(parsed[0].kind, urls=urls)


def _detect_gpus() -> tuple[str, int] | None:
    """The first GPU library that sees a device (``("nvml", n)`` / ``("amdsmi", n)``), or None."""
    from . import amdsmi, nvml
    n = nvml.visible_gpus()
    if n:
        return "nvml", n
    n = amdsmi.visible_gpus()
    if n:
        return "amdsmi", n
    return None


def choose_sampler(spec: str | Sequence[str] = "auto", *, sim_metrics_url: str | None = None,
                   accelerators: int | None = None, interval_s: float | None = None,
                   detect: Callable[[], tuple[str, int] | None] = _detect_gpus) -> PowerChoice:
    """Builds the sampler for ``spec``. ``sim_metrics_url``: the embedded simulator's /metrics URL
    when the run uses it (``auto`` and ``sim`` pick it). ``accelerators``: the count for
    ``constant:W``. ``interval_s``: overrides the source's default sampling interval. ``detect``:
    how ``auto`` looks for GPUs (a parameter for tests). Raises :class:`ValueError` for a bad spec;
    never loads a GPU library except for ``auto``'s detection (which prints nothing)."""
    from .amdsmi import AmdSmiSampler
    from .constant import ConstantSampler
    from .nvml import NvmlSampler
    from .prometheus import PrometheusSampler, sim_sampler

    p = parse_power_spec(spec)
    kw = {} if interval_s is None else {"interval_s": interval_s}
    if p.kind == "auto":
        if sim_metrics_url:
            s = sim_sampler(sim_metrics_url, **kw)
            return PowerChoice(s, f"power: auto: the embedded simulator's {sim_metrics_url} (boundary simulated)",
                               PowerSpec("sim", urls=(sim_metrics_url,)))
        found = detect()
        if found is None:
            return PowerChoice(None, "power: auto: no simulator, and neither NVML nor AMD-SMI sees a GPU here: "
                               "no power measured (give --power prometheus:URL or constant:W)", PowerSpec("none"))
        lib, n = found
        sampler: PowerSampler = NvmlSampler(**kw) if lib == "nvml" else AmdSmiSampler(**kw)
        return PowerChoice(sampler, f"power: auto: {lib} sees {n} GPU(s): measuring all of them", PowerSpec(lib))
    if p.kind == "none":
        return PowerChoice(None, "power: none (no agents/MW)", p)
    if p.kind == "nvml":
        return PowerChoice(NvmlSampler(p.devices, **kw), f"power: nvml, {_which(p)}", p)
    if p.kind == "amdsmi":
        return PowerChoice(AmdSmiSampler([int(d) for d in p.devices], **kw), f"power: amdsmi, {_which(p)}", p)
    if p.kind == "prometheus":
        return PowerChoice(PrometheusSampler(p.urls, **kw), f"power: prometheus, {', '.join(p.urls)}", p)
    if p.kind == "sim":
        url = p.urls[0] if p.urls else sim_metrics_url
        if not url:
            raise _bad("sim", "no simulator runs embedded here: give sim:URL")
        return PowerChoice(sim_sampler(url, **kw) if len(p.urls) <= 1 else
                           PrometheusSampler(p.urls, boundary="simulated", source="sim", **kw),
                           f"power: sim, {', '.join(p.urls or (url,))}", p)
    count = p.count or accelerators or 1
    assert p.watts is not None
    return PowerChoice(ConstantSampler(p.watts, count, **kw),
                       f"power: constant {p.watts:g} W × {count} accelerator(s) (declared, not measured)", p)


def _which(p: PowerSpec) -> str:
    return "all GPUs" if not p.devices else "GPU(s) " + ", ".join(str(d) for d in p.devices)
