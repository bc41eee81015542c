"""`deskml doctor`'s GPU checks, with nvidia-smi, llama.cpp's devices and torch's build faked."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from deskml.engines import devices
from deskml.runtime.doctor import Check
from deskml.runtime.doctor import gpu as doctor_gpu
from tests.conftest import make_settings

SMI_LIST = "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-1234)\n"
SMI_BANNER = "| NVIDIA-SMI 570.86   Driver Version: 570.86   CUDA Version: 12.8 |\n"


def _runner(listed: str | None, banner: str | None) -> Any:
    def run(*cmd: str) -> str | None:
        return listed if cmd[1:] == ("-L",) else banner
    return run


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def no_amd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_gpu.platform, "system", lambda: "Linux")
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if str(self) == "/dev/kfd" else real_exists(self))


def test_nvidia_gpu_with_cpu_only_builds_names_both_fixes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_amd: None) -> None:
    monkeypatch.setattr(devices, "_probe_llama_devices", lambda: [])
    monkeypatch.setattr(doctor_gpu, "torch_build", lambda: "cpu")
    checks = _by_name(doctor_gpu.gpu_checks(make_settings(tmp_path), _runner(SMI_LIST, SMI_BANNER)))
    assert "RTX 4090" in checks["gpu"].message
    assert checks["llm-gpu"].status == "warn" and "CPU-only build" in checks["llm-gpu"].message
    assert checks["llm-gpu"].fix == (
        "pip install xllamacpp --force-reinstall --index-url https://xorbitsai.github.io/xllamacpp/whl/cu128")
    assert checks["torch-gpu"].status == "warn"
    assert checks["torch-gpu"].fix == "pip install torch --force-reinstall --index-url https://download.pytorch.org/whl/cu128"


def test_cuda_13_driver_gets_the_cu132_wheel_and_old_driver_an_update_hint() -> None:
    assert doctor_gpu.xllamacpp_fix((13, 2)).endswith("/whl/cu132")  # type: ignore[union-attr]
    assert doctor_gpu.xllamacpp_fix((13, 0)).endswith("/whl/cu128")  # type: ignore[union-attr]
    assert doctor_gpu.xllamacpp_fix((12, 4)) is None
    assert doctor_gpu.torch_fix((12, 6)).endswith("/whl/cu126")


def test_gpu_build_that_sees_the_gpu_is_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_amd: None) -> None:
    kind = types.SimpleNamespace(name="GGML_BACKEND_DEVICE_TYPE_GPU")
    monkeypatch.setattr(devices, "_probe_llama_devices", lambda: [
        {"name": "CUDA0", "description": "NVIDIA GeForce RTX 4090", "memory_free": 20 << 30,
         "memory_total": 24 << 30, "type": kind}])
    monkeypatch.setattr(doctor_gpu, "torch_build", lambda: "cuda")
    checks = _by_name(doctor_gpu.gpu_checks(make_settings(tmp_path), _runner(SMI_LIST, SMI_BANNER)))
    assert checks["llm-gpu"].status == "ok" and "CUDA build" in checks["llm-gpu"].message
    assert "CUDA0" in checks["llm-gpu"].message and "20.0 GiB free" in checks["llm-gpu"].message
    assert checks["torch-gpu"].status == "ok"
    off = _by_name(doctor_gpu.gpu_checks(make_settings(tmp_path, gpu="off"), _runner(SMI_LIST, SMI_BANNER)))
    assert "DESKML_GPU=off" in off["llm-gpu"].message


def test_no_gpu_says_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_amd: None) -> None:
    monkeypatch.setattr(devices, "_probe_llama_devices", lambda: [])
    checks = doctor_gpu.gpu_checks(make_settings(tmp_path), _runner(None, None))
    assert [(c.name, c.status, c.message) for c in checks] == [
        ("llm-gpu", "info", "no GPU found: models run on the CPU")]


def test_torch_build_from_wheel_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "torch_info", lambda import_torch=False: None)
    monkeypatch.setattr(doctor_gpu.platform, "system", lambda: "Linux")
    for version, build in (("2.9.0+cpu", "cpu"), ("2.9.0+cu128", "cuda"), ("2.9.0+rocm6.4", "rocm"), ("2.9.0", "cuda")):
        monkeypatch.setattr(doctor_gpu.importlib.metadata, "version", lambda _name, v=version: v)
        assert doctor_gpu.torch_build() == build
