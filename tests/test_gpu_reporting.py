"""Where models run, as /api/ps, `deskml ps` and /metrics report it: the real CPU path, and faked GPUs."""

from __future__ import annotations

import asyncio
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.api.ollama import translate as tr
from deskml.app import create_app
from deskml.cli.main import processor_cell
from deskml.engines import devices
from deskml.engines.llama_cpp import engine as llama_cpp
from deskml.engines.spec import ServiceSpec
from deskml.runtime.service_models.manager import ServiceManager
from tests.conftest import MODEL, make_settings

GIB = 1 << 30


def _metric(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


@pytest.mark.slow  # the real model
def test_cpu_model_reports_zero_vram_and_100_percent_cpu(tmp_path: Path) -> None:
    """The real bundled model on this CPU machine: nothing on a GPU, exactly as before."""
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert client.post("/api/generate", json={"model": MODEL}).status_code == 200
        row = client.get("/api/ps").json()["models"][0]
        assert row["size_vram"] == 0 and row["processor"] == "100% CPU" and row["device"] == "cpu"
        assert row["size"] > 0
        lines = _metric(client.get("/metrics").text, "deskml_model_device_memory_bytes")
        assert lines == [f'deskml_model_device_memory_bytes{{device="cpu",kind="llm",model="{MODEL}"}} 0.0']


def test_faked_gpu_shows_in_ps_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kind = types.SimpleNamespace(name="GGML_BACKEND_DEVICE_TYPE_GPU")
    monkeypatch.setattr(devices, "_probe_llama_devices", lambda: [
        {"name": "CUDA0", "description": "fake RTX", "memory_free": 24 * GIB, "memory_total": 24 * GIB, "type": kind}])

    def fake_load(engine: llama_cpp.LlamaCppModel) -> None:
        engine._server = object()
        engine.gpu = engine.config.gpu

    monkeypatch.setattr(llama_cpp.LlamaCppModel, "load", fake_load)
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert client.post("/api/generate", json={"model": MODEL}).status_code == 200
        row = client.get("/api/ps").json()["models"][0]
        assert row["processor"] == "100% GPU" and row["size_vram"] == row["size"] > 0 and row["device"] == "CUDA0"
        # a request's num_gpu reloads the model with that many layers (SmolLM2: 31 in all)
        body = {"model": MODEL, "options": {"num_gpu": 16}}
        assert client.post("/api/generate", json=body).status_code == 200
        (row,) = client.get("/api/ps").json()["models"]
        assert row["processor"] == "48%/52% CPU/GPU" and 0 < row["size_vram"] < row["size"]
        lines = _metric(client.get("/metrics").text, "deskml_model_device_memory_bytes")
        assert len(lines) == 1 and 'device="CUDA0"' in lines[0] and float(lines[0].split()[-1]) == row["size_vram"]
        bad = client.post("/api/generate", json={"model": MODEL, "options": {"num_gpu": "many"}})
        assert bad.status_code == 400 and "num_gpu" in bad.json()["error"]


def test_service_row_carries_its_device() -> None:
    spec = ServiceSpec(name="all-minilm", kind="embedding", engine="x:Y", extra="embed")
    when = datetime.now(UTC)
    on_gpu = tr.service_process(spec, None, when, 0, device="cuda")
    assert (on_gpu.processor, on_gpu.device) == ("100% GPU", "cuda")
    on_cpu = tr.service_process(spec, None, when, 0)
    assert (on_cpu.processor, on_cpu.device, on_cpu.size_vram) == ("100% CPU", "cpu", 0)


def test_service_manager_hands_the_setting_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    class Engine:
        def __init__(self, spec: Any) -> None:
            self.spec = spec

        def load(self) -> None:
            seen.append(self.gpu_services)  # type: ignore[attr-defined]

        def close(self) -> None:
            pass

    module = types.ModuleType("fake_gpu_engine")
    module.Engine = Engine  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "fake_gpu_engine", module)
    manager = ServiceManager([], keep_alive=60, gpu_services="embedding")
    asyncio.run(manager._load(ServiceSpec(name="m", kind="embedding", engine="fake_gpu_engine:Engine", extra="embed")))
    assert seen == ["embedding"]


def test_cli_processor_column() -> None:
    assert processor_cell({"processor": "100% GPU", "device": "CUDA0"}) == "100% GPU (CUDA0)"
    assert processor_cell({"processor": "100% CPU", "device": "cpu"}) == "100% CPU"
    # an Ollama server sends only size and size_vram
    assert processor_cell({"size": 100, "size_vram": 52}) == "48%/52% CPU/GPU"
    assert processor_cell({"size": 100, "size_vram": 0}) == "100% CPU"


def test_metrics_gauge_for_a_service_model_on_a_gpu(tmp_path: Path) -> None:
    from deskml.runtime.service_models.listing import weight_bytes
    from deskml.services.metrics import _LiveState

    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"x" * 1000)
    spec = ServiceSpec(name="yolo", kind="detect", engine="x:Y", extra="vision", options={"path": str(weights)})
    on_gpu = types.SimpleNamespace(spec=spec, engine=types.SimpleNamespace(device="cuda"), active=0)
    on_cpu = types.SimpleNamespace(spec=ServiceSpec(name="cpu-one", kind="detect", engine="x:Y", extra="vision"),
                                   engine=types.SimpleNamespace(device="cpu"), active=0)
    models = types.SimpleNamespace(loaded=lambda: [])
    services = types.SimpleNamespace(loaded=lambda: [on_gpu, on_cpu])
    collector = _LiveState(models, services, history=None, drain=None, weight_bytes=weight_bytes)
    family = next(m for m in collector.collect() if m.name == "deskml_model_device_memory_bytes")
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"model": "yolo", "kind": "detect", "device": "cuda"}, 1000.0)]
