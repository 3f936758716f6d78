"""AMD GPUs through AMD-SMI (the ``amdsmi`` package that ships with ROCm).

Energy = ``amdsmi_get_energy_count`` accumulator × ``counter_resolution`` (µJ). That counter is
known to be wrong on some parts, so for the first ``cross_check_s`` of sampling each device's
counter is compared with its sampled power × time (``amdsmi_get_power_info``: current socket power,
else average socket power); outside 0.1–10× the counter is dropped for that device and its windows
integrate the power samples, which the notes say. (Not available in VM guests; MI250's odd
chiplets report 0 W.)

Without ROCm, importing ``amdsmi`` prints to stdout and raises; :func:`import_amdsmi` silences both
(file-descriptor level, so C-side prints too) and turns any failure into one line.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any, Iterator, Sequence

from .sampler import Device, PowerSampler, PowerUnavailable, Reading, _one_line, now_ns

#: The counter / power × time ratio outside which the counter is not trusted (as Zeus does).
RATIO_RANGE = (0.1, 10.0)
_POWER_KEYS = ("current_socket_power", "socket_power", "average_socket_power")

_imported: tuple[Any, str | None] | None = None


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Sends fd 1 and 2 (and sys.stdout / sys.stderr) to /dev/null for the block."""
    saved: list[tuple[int, int]] = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                sys.stdout.flush() if fd == 1 else sys.stderr.flush()
            except Exception:
                pass
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def import_amdsmi() -> Any:
    """The ``amdsmi`` module, or :class:`PowerUnavailable` with a one-line reason. The import runs
    once per process with its output silenced; the outcome is remembered."""
    global _imported
    if _imported is None:
        try:
            with _silenced():
                import amdsmi  # type: ignore[import-not-found]
            _imported = (amdsmi, None)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # ImportError, KeyError('libamd_smi.so'), SystemExit, OSError ...
            if isinstance(e, ImportError) and getattr(e, "name", None) == "amdsmi":
                why = "the amdsmi package is not installed (it ships with ROCm)"
            else:
                why = f"the amdsmi package did not load (ROCm's libamd_smi.so missing?): {type(e).__name__} {_one_line(e)}"
            _imported = (None, why)
    module, why = _imported
    if module is None:
        raise PowerUnavailable(f"amdsmi: {why}")
    return module


def visible_gpus() -> int:
    """How many AMD GPUs AMD-SMI sees (0 without it); never raises, prints nothing."""
    try:
        amdsmi = import_amdsmi()
        with _silenced():
            amdsmi.amdsmi_init()
            try:
                return len(amdsmi.amdsmi_get_processor_handles())
            finally:
                amdsmi.amdsmi_shut_down()
    except Exception:
        return 0


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


class AmdSmiSampler(PowerSampler):
    """AMD GPUs on this host; ``devices`` are AMD-SMI indices (all when empty)."""

    source = "amdsmi"

    def __init__(self, devices: Sequence[int] = (), *, interval_s: float = 0.1, cross_check_s: float = 3.0,
                 **kw: Any) -> None:
        super().__init__(interval_s=interval_s, boundary="gpu", **kw)
        self.selection = [int(d) for d in devices]
        self.cross_check_s = cross_check_s
        self._smi: Any = None
        self._handles: list[Any] = []
        self._has_energy: list[bool] = []

    def _open(self) -> list[Device]:
        smi = import_amdsmi()
        try:
            smi.amdsmi_init()
        except Exception as e:
            raise PowerUnavailable(f"amdsmi: AMD-SMI did not initialise (no amdgpu driver or GPU here): "
                                   f"{_one_line(e)}") from None
        self._smi = smi
        try:
            handles = list(smi.amdsmi_get_processor_handles())
            if not handles:
                raise PowerUnavailable("amdsmi: AMD-SMI sees no GPU")
            wanted = self.selection or list(range(len(handles)))
            devices = []
            for i, sel in enumerate(wanted):
                if not 0 <= sel < len(handles):
                    raise PowerUnavailable(f"amdsmi: no GPU {sel} (AMD-SMI sees {len(handles)})")
                h = handles[sel]
                self._handles.append(h)
                name = uuid = ""
                with contextlib.suppress(Exception):
                    name = str(smi.amdsmi_get_gpu_asic_info(h).get("market_name", ""))
                with contextlib.suppress(Exception):
                    uuid = str(smi.amdsmi_get_gpu_device_uuid(h))
                devices.append(Device(index=i, name=name, uuid=uuid, source_index=str(sel)))
                try:
                    smi.amdsmi_get_energy_count(h)
                    self._has_energy.append(True)
                except Exception as e:
                    self._has_energy.append(False)
                    self.notes.append(f"device {i}: no energy counter ({_one_line(e)}): integrating power samples")
            return devices
        except BaseException:
            self._handles.clear()
            with contextlib.suppress(Exception):
                smi.amdsmi_shut_down()
            raise

    def _power_w(self, h: Any) -> float | None:
        info = self._smi.amdsmi_get_power_info(h)
        for key in _POWER_KEYS:
            v = _number(info.get(key))
            if v is not None and v > 0:
                return v
        return None

    def _read(self) -> list[Reading]:
        out = []
        for i, h in enumerate(self._handles):
            t0 = now_ns()
            energy_j = None
            if self._has_energy[i]:
                e = self._smi.amdsmi_get_energy_count(h)
                acc = e.get("energy_accumulator", e.get("power"))
                energy_j = float(acc) * float(e["counter_resolution"]) / 1e6
            out.append(Reading(i, (t0 + now_ns()) // 2, self._power_w(h), energy_j))
        return out

    def _after_read(self) -> None:
        self.cross_check_counters(after_s=self.cross_check_s, ratio_range=RATIO_RANGE)

    def _close(self) -> None:
        if self._smi is not None:
            self._handles.clear()
            with contextlib.suppress(Exception):
                self._smi.amdsmi_shut_down()
