"""Every source on a machine without the hardware degrades to one line: no traceback, nothing
printed (AMD-SMI's import prints to stdout and raises without ROCm)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from agentperf_native.power import PowerUnavailable, probe
from agentperf_native.power import amdsmi as amd
from agentperf_native.power import nvml

no_gpu = pytest.mark.skipif(bool(nvml.visible_gpus() or amd.visible_gpus()),
                            reason="a GPU is visible: the probe measures it instead")


def one_line(text: str) -> None:
    assert text and "\n" not in text and "Traceback" not in text


@no_gpu
@pytest.mark.parametrize("spec", ["nvml", "nvml:0", "nvml:GPU-0000", "amdsmi", "amdsmi:0", "auto"])
def test_probe_without_hardware_is_one_line(spec, capfd):
    out = probe(spec, duration_s=0.1)
    one_line(out)
    assert spec.split(":")[0] in out
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""


def test_bad_spec_probe_is_one_line():
    out = probe("nvml:zero", duration_s=0)
    one_line(out)
    assert out.startswith("power probe: --power 'nvml:zero'")


def test_probe_none_and_constant():
    one_line(probe("none"))
    out = probe("constant:350x2", duration_s=0.05)
    assert "700.0 W in total" in out and "method constant" in out


def test_nvml_bindings_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)     # an import of pynvml now fails
    out = probe("nvml", duration_s=0)
    one_line(out)
    assert "pip install nvidia-ml-py" in out
    assert nvml.visible_gpus() == 0


@pytest.mark.parametrize("body", ids=["python-print", "c-print-and-exit"], argvalues=[
    # what the real package does without ROCm: print, then fail on a missing library
    'print("/opt/rocm/lib/libamd_smi.so: cannot open shared object file")\n'
    'print("Unable to find libamd_smi.so library try installing amd-smi-lib")\n'
    'raise KeyError("libamd_smi.so")\n',
    # the same from C (file descriptor 1 and 2), and an exit
    'import os\nos.write(1, b"from C on stdout\\n")\nos.write(2, b"from C on stderr\\n")\nraise SystemExit(1)\n',
])
def test_amdsmi_import_is_silenced_and_one_line(body, tmp_path, monkeypatch, capfd):
    (tmp_path / "amdsmi.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.setattr(amd, "_imported", None)
    with pytest.raises(PowerUnavailable) as e:
        amd.import_amdsmi()
    one_line(str(e.value))
    assert str(e.value).startswith("amdsmi: the amdsmi package did not load")
    out = probe("amdsmi", duration_s=0)
    one_line(out)
    assert amd.visible_gpus() == 0
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""


def test_amdsmi_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    monkeypatch.setattr(amd, "_imported", None)
    with pytest.raises(PowerUnavailable, match="not installed"):
        amd.import_amdsmi()


def test_power_package_does_not_import_the_engine():
    import subprocess

    code = ("import sys, importlib.util, types\n"
            "sys.modules['agentperf_native'] = types.ModuleType('agentperf_native')\n"
            "sys.modules['agentperf_native'].__path__ = [sys.argv[1]]\n"
            "import agentperf_native.power\n"
            "bad = [m for m in sys.modules if m.startswith('agentperf_native.') and not m.startswith('agentperf_native.power')]\n"
            "assert not bad, bad\n")
    import agentperf_native
    pkg = agentperf_native.__path__[0]
    r = subprocess.run([sys.executable, "-c", code, pkg], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
