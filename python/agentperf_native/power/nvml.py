"""NVIDIA GPUs through NVML (``pynvml`` from the ``nvidia-ml-py`` package).

Primary measure: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded, Volta and
later), read every ``interval_s`` and differenced over each window. Beside it, the instantaneous
power for the timeline and a cross-check: the ``NVML_FI_DEV_POWER_INSTANT`` field where the driver
has it, else ``nvmlDeviceGetPowerUsage`` (a 1 s trailing average on Ampere and later, GA100
excepted, which the notes say). At open the counter's update period is measured by polling it for
``measure_period_s``; a window shorter than that falls back to power × time.

Boundary: NVML reports the GPU and its associated circuitry (memory included): ``gpu``, the
die + HBM boundary AA-AgentPerf uses.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

from .sampler import Device, PowerSampler, PowerUnavailable, Reading, _one_line, now_ns

INSTALL_HINT = "pip install nvidia-ml-py"


def import_pynvml() -> Any:
    """The ``pynvml`` module, or :class:`PowerUnavailable` with a one-line reason."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception as e:  # ImportError, or a broken install
        raise PowerUnavailable(f"nvml: the NVML bindings are not installed ({INSTALL_HINT}): {_one_line(e)}") from None
    return pynvml


def nvml_init(pynvml: Any) -> None:
    try:
        pynvml.nvmlInit()
    except Exception as e:
        raise PowerUnavailable(f"nvml: NVML did not initialise (no NVIDIA driver or GPU visible here): "
                               f"{_one_line(e)}") from None


def visible_gpus() -> int:
    """How many NVIDIA GPUs NVML sees (0 without bindings, driver or GPU); never raises."""
    try:
        pynvml = import_pynvml()
        nvml_init(pynvml)
    except PowerUnavailable:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _field_value(fv: Any, pynvml: Any) -> float:
    """A ``nvmlFieldValue_t``'s value by its declared type."""
    kinds = {getattr(pynvml, "NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
             getattr(pynvml, "NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
             getattr(pynvml, "NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
             getattr(pynvml, "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
             getattr(pynvml, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
             getattr(pynvml, "NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal"}
    return float(getattr(fv.value, kinds.get(fv.valueType, "uiVal")))


class NvmlSampler(PowerSampler):
    """NVIDIA GPUs on this host. ``devices``: NVML indices (``0``) or UUIDs (``GPU-…``); all GPUs
    when empty. Nothing is loaded until :meth:`open` / :meth:`start` / :meth:`run`."""

    source = "nvml"

    def __init__(self, devices: Sequence[int | str] = (), *, interval_s: float = 0.1,
                 measure_period_s: float = 0.3, **kw: Any) -> None:
        super().__init__(interval_s=interval_s, boundary="gpu", **kw)
        self.selection = list(devices)
        self.measure_period_s = measure_period_s
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._has_energy: list[bool] = []
        self._instant: list[bool] = []

    def _open(self) -> list[Device]:
        pynvml = import_pynvml()
        nvml_init(pynvml)
        self._nvml = pynvml
        try:
            count = int(pynvml.nvmlDeviceGetCount())
            if count == 0:
                raise PowerUnavailable("nvml: NVML sees no GPU")
            wanted: list[int | str] = self.selection or list(range(count))
            devices = []
            for i, sel in enumerate(wanted):
                try:
                    h = (pynvml.nvmlDeviceGetHandleByUUID(sel) if isinstance(sel, str)
                         else pynvml.nvmlDeviceGetHandleByIndex(int(sel)))
                except Exception as e:
                    raise PowerUnavailable(f"nvml: no GPU {sel!r} (NVML sees {count}): {_one_line(e)}") from None
                self._handles.append(h)
                devices.append(Device(index=i, name=_text(pynvml.nvmlDeviceGetName(h)),
                                      uuid=_text(pynvml.nvmlDeviceGetUUID(h)),
                                      source_index=str(pynvml.nvmlDeviceGetIndex(h))))
            self._probe_capabilities(devices)
            return devices
        except BaseException:
            self._handles.clear()
            pynvml.nvmlShutdown()
            raise

    def _probe_capabilities(self, devices: list[Device]) -> None:
        pynvml = self._nvml
        field = getattr(pynvml, "NVML_FI_DEV_POWER_INSTANT", None)
        for d, h in zip(devices, self._handles):
            try:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
                self._has_energy.append(True)
            except Exception as e:
                self._has_energy.append(False)
                self.notes.append(f"device {d.index}: no energy counter ({_one_line(e)}): integrating power samples")
            ok = False
            if field is not None:
                try:
                    fv = pynvml.nvmlDeviceGetFieldValues(h, [field])[0]
                    ok = fv.nvmlReturn == 0
                except Exception:
                    ok = False
            self._instant.append(ok)
            if not ok:
                self.notes.append(f"device {d.index}: no POWER_INSTANT field; power samples are "
                                  "nvmlDeviceGetPowerUsage, a 1 s average on Ampere and later")
        if any(self._has_energy):
            self.counter_update_ns = self._measure_update_period()
            if self.counter_update_ns is not None:
                self.notes.append(f"energy counter update period measured at {self.counter_update_ns / 1e6:.0f} ms")

    def _measure_update_period(self) -> int | None:
        """Polls the first counter for ``measure_period_s`` and returns the median time between
        changes (None when it changed fewer than 3 times)."""
        if self.measure_period_s <= 0:
            return None
        h = self._handles[self._has_energy.index(True)]
        end = now_ns() + int(self.measure_period_s * 1e9)
        last = None
        changes: list[int] = []
        while now_ns() < end:
            v = self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)
            t = now_ns()
            if last is not None and v != last:
                changes.append(t)
            last = v
            time.sleep(0.002)   # on the sampler's own thread, during open only
        if len(changes) < 3:
            return None
        return int(statistics.median(b - a for a, b in zip(changes, changes[1:])))

    def _read(self) -> list[Reading]:
        pynvml = self._nvml
        field = getattr(pynvml, "NVML_FI_DEV_POWER_INSTANT", None)
        out = []
        for i, h in enumerate(self._handles):
            t0 = now_ns()
            energy_j = pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0 if self._has_energy[i] else None
            power_w = None
            if self._instant[i]:
                fv = pynvml.nvmlDeviceGetFieldValues(h, [field])[0]
                if fv.nvmlReturn == 0:
                    power_w = _field_value(fv, pynvml) / 1000.0
            if power_w is None:
                power_w = pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0
            out.append(Reading(i, (t0 + now_ns()) // 2, power_w, energy_j))
        return out

    def _close(self) -> None:
        if self._nvml is not None:
            self._handles.clear()
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass

    def describe(self) -> list[str]:
        lines = []
        for d, energy, instant in zip(self.devices, self._has_energy, self._instant):
            lines.append(f"  device {d.index} (NVML {d.source_index}): {d.name} {d.uuid}; "
                         f"energy counter: {'yes' if energy else 'no'}; "
                         f"power: {'POWER_INSTANT' if instant else 'nvmlDeviceGetPowerUsage (1 s average)'}")
        return lines


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
