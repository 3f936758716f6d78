"""A user-given constant: ``WATTS`` per accelerator × ``count`` accelerators, for deployments
whose power cannot be read (a TDP, a nameplate, a figure measured elsewhere). Not a measurement,
and every window says so (method ``constant``)."""

from __future__ import annotations

from typing import Any

from .sampler import Device, DeviceWindow, PowerSampler, Reading, now_ns


class ConstantSampler(PowerSampler):
    """``watts`` per accelerator on ``count`` accelerators; ``boundary`` is what the figure covers
    (the user says; ``gpu`` by default)."""

    source = "constant"

    def __init__(self, watts: float, count: int = 1, *, boundary: str = "gpu", interval_s: float = 1.0,
                 **kw: Any) -> None:
        if not watts > 0:
            raise ValueError(f"constant power must be > 0 W, got {watts}")
        if count < 1:
            raise ValueError(f"constant power needs at least 1 accelerator, got {count}")
        super().__init__(interval_s=interval_s, boundary=boundary, **kw)
        self.watts = float(watts)
        self.count = int(count)
        self.notes.append(f"a declared {self.watts:g} W per accelerator × {self.count}, not a measurement")

    def _open(self) -> list[Device]:
        return [Device(index=i, name="constant") for i in range(self.count)]

    def _read(self) -> list[Reading]:
        t = now_ns()
        return [Reading(i, t, self.watts, None) for i in range(self.count)]

    def _device_window(self, d: Device, start_ns: int, end_ns: int) -> DeviceWindow:
        duration_s = (end_ns - start_ns) / 1e9
        return DeviceWindow(index=d.index, name=d.name, uuid=d.uuid, method="constant",
                            energy_j=self.watts * duration_s, mean_w=self.watts,
                            measured_energy_j=self.watts * duration_s, coverage=1.0, largest_gap_s=0.0,
                            readings=0)

    def window(self, start_ns: int, end_ns: int):  # type: ignore[override]
        self.open()   # nothing to load: a constant needs no start to answer
        return super().window(start_ns, end_ns)
