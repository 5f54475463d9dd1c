"""`tendril worker probe`: detected resources; never a GPU without NVML saying so."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from tendril.cli.main import run
from tendril.core.resources import detect_gpus


def _nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


def test_probe_json_reports_what_nvml_finds() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tendril.cli", "worker", "probe", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    found = data["detected"]
    assert found["cpu"] >= 1 and found["memory_gib"] > 0 and found["storage_gib"] >= 0
    assert found["gpu_reason"]
    assert found["gpu_count"] == len(found["gpus"])
    if not _nvml_works():
        # This machine has no NVIDIA driver: 0 GPUs, and the reason says why.
        assert found["gpu_count"] == 0
        assert "NVML" in found["gpu_reason"] or "pynvml" in found["gpu_reason"]
    assert data["offered"]["gpu"] == found["gpu_count"]  # resources.gpu = -1: detect


def test_probe_text_prints_the_gpu_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["worker", "probe", "--set", "resources.cpu=3", "--set", "resources.gpu=0"]) == 0
    out = capsys.readouterr().out
    gpus, reason = detect_gpus()
    assert f"gpus     {len(gpus)} ({reason})" in out
    assert "offered  cpu=3 " in out and "gpu=0" in out


def test_no_driver_means_zero_gpus_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("pynvml")

    def init() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus, reason = detect_gpus()
    assert gpus == [] and "no NVIDIA driver" in reason and "Not Found" in reason


def test_missing_pynvml_means_zero_gpus_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    gpus, reason = detect_gpus()
    assert gpus == [] and "not installed" in reason


def test_probe_json_with_a_fake_nvml_gpu(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: b"Test GPU"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUUID = lambda h: "GPU-0000"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=16 * 1024**3)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert run(["worker", "probe", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["detected"]["gpu_count"] == 1
    assert data["detected"]["gpus"][0] == {"index": 0, "name": "Test GPU", "memory_gib": 16.0, "uuid": "GPU-0000"}
    assert data["offered"]["gpu"] == 1
