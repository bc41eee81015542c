"""GPU support with devices faked at the boundary (xllamacpp.get_device_info, torch, onnxruntime, CTranslate2).

No test here needs a GPU; the real bundled model is loaded only where a test says so (CPU behaviour)."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from deskml.core.errors import EngineError, ModelLoadError
from deskml.engines import devices
from deskml.engines.devices import CPU_PLAN, Device, GpuPlan
from deskml.engines.llama_cpp import engine as llama_cpp
from deskml.runtime.lifecycle import ModelManager
from deskml.runtime.model_store import ModelStore
from deskml.runtime.registry import Registry
from tests.conftest import MODEL, make_settings

GIB = 1 << 30


def _raw(name: str, free: int, kind: str = "GPU") -> dict[str, Any]:
    kinds = types.SimpleNamespace(name=f"GGML_BACKEND_DEVICE_TYPE_{kind}")
    return {"name": name, "description": f"fake {name}", "memory_free": free, "memory_total": free + GIB,
            "type": kinds, "device_id": "", "caps": {}}


def _fake_llama(monkeypatch: pytest.MonkeyPatch, *raw: dict[str, Any]) -> None:
    monkeypatch.setattr(devices, "_probe_llama_devices", lambda: [_raw("CPU", 8 * GIB, "CPU"), *raw])


def _gpu(index: int, free: int) -> Device:
    return Device(index=index, name=f"CUDA{index}", description="fake", backend="CUDA",
                  memory_total=free + GIB, memory_free=free)


# discovery -----------------------------------------------------------------------------------------
def test_cpu_only_build_reports_no_gpus() -> None:
    # the installed xllamacpp here is the CPU wheel: only a CPU device, so nothing is offloaded
    assert devices.llama_devices() == []


def test_gpus_are_listed_with_backend_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_llama(monkeypatch, _raw("CUDA0", 20 * GIB), _raw("Vulkan1", 4 * GIB, "IGPU"))
    found = devices.llama_devices()
    assert [(d.index, d.name, d.backend, d.memory_free) for d in found] == [
        (0, "CUDA0", "CUDA", 20 * GIB), (1, "Vulkan1", "Vulkan", 4 * GIB)]


def test_torch_is_not_imported_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    assert devices.torch_info() is None
    assert "torch" not in __import__("sys").modules


def test_torch_info_from_a_faked_cuda_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 2,
                                 get_device_name=lambda i: f"RTX {i}")
    fake = types.SimpleNamespace(__version__="2.9.0+cu128", cuda=cuda, version=types.SimpleNamespace(cuda="12.8"),
                                 backends=types.SimpleNamespace(mps=types.SimpleNamespace(is_available=lambda: False)))
    monkeypatch.setattr(devices, "_probe_torch", lambda _import: fake)
    info = devices.torch_info()
    assert info is not None and info.cuda and info.cuda_version == "12.8" and info.devices == ["RTX 0", "RTX 1"]
    assert devices.torch_device(fake, "embedding", "auto") == "cuda"
    assert devices.torch_device(fake, "embedding", "off") == "cpu"
    assert devices.torch_device(fake, "embedding", "image") == "cpu"
    assert devices.torch_device(fake, "image", "image,asr") == "cuda"


def test_onnx_and_ctranslate2_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_probe_onnx_providers", lambda: ["CPUExecutionProvider", "CUDAExecutionProvider"])
    monkeypatch.setattr(devices, "_probe_ctranslate2_cuda", lambda: 1)
    assert devices.onnx_providers("vision", "auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert devices.onnx_providers("vision", "off") == ["CPUExecutionProvider"]
    assert devices.ctranslate2_placement("asr", "auto") == ("cuda", "float16")
    assert devices.ctranslate2_placement("asr", "embedding") == ("cpu", "int8")
    monkeypatch.setattr(devices, "_probe_ctranslate2_cuda", lambda: 0)
    assert devices.ctranslate2_placement("asr", "auto") == ("cpu", "int8")


# settings and planning --------------------------------------------------------------------------------
def test_gpu_setting_values(tmp_path: Path) -> None:
    assert make_settings(tmp_path).gpu == "auto"
    assert make_settings(tmp_path, gpu="0,1").gpu == "0,1"
    assert devices.parse_gpu_setting("0, 1") == [0, 1]
    assert devices.parse_gpu_setting("OFF") == "off"
    with pytest.raises(ValidationError, match="DESKML_GPU"):
        make_settings(tmp_path, gpu="cuda")
    assert make_settings(tmp_path, gpu_services=" Embedding, image ").gpu_services == "embedding,image"
    with pytest.raises(ValidationError, match="unknown kind"):
        make_settings(tmp_path, gpu_services="embeddings")


def test_auto_layers_fit_free_memory() -> None:
    # 32 blocks + output = 33 shares of (4 GiB weights + 0.125 GiB KV) = 128 MiB a layer
    kw: dict[str, Any] = {"block_count": 32, "model_bytes": 4 * GIB, "kv_bytes": GIB // 8}
    assert devices.auto_layers(free=[24 * GIB], **kw) == 33  # everything fits
    # 2 GiB free - 512 MiB reserve - 256 MiB graph = 1.25 GiB: 10 layers of 128 MiB
    assert devices.auto_layers(free=[2 * GIB], **kw) == 10
    assert devices.auto_layers(free=[512 << 20], **kw) == 0  # only the reserve: CPU
    assert devices.auto_layers(free=[1 * GIB, 1 * GIB], **kw) == 6  # two GPUs add up, each keeps its reserve
    assert devices.auto_layers(free=[], **kw) == 0


def test_plan_honours_setting_num_gpu_and_main_gpu() -> None:
    gpus = [_gpu(0, 2 * GIB), _gpu(1, 6 * GIB)]
    kw: dict[str, Any] = {"devices": gpus, "block_count": 32, "model_bytes": 4 * GIB, "kv_bytes": GIB // 8}
    assert devices.plan(setting="off", **kw).n_gpu_layers == 0
    assert devices.plan(setting="auto", devices=[], block_count=32, model_bytes=GIB, kv_bytes=0) == GpuPlan(
        total_layers=33)
    both = devices.plan(setting="auto", **kw)
    assert both.n_gpu_layers == 33 and [d.index for d in both.devices] == [0, 1]
    assert both.split == pytest.approx((0.25, 0.75))
    only_first = devices.plan(setting="0", **kw)
    assert [d.index for d in only_first.devices] == [0] and only_first.n_gpu_layers == 10
    assert devices.plan(setting="auto", num_gpu=5, **kw).n_gpu_layers == 5
    assert devices.plan(setting="auto", num_gpu=999, **kw).n_gpu_layers == 33
    assert devices.plan(setting="auto", num_gpu=0, **kw).n_gpu_layers == 0
    main = devices.plan(setting="auto", main_gpu=1, **kw)
    assert main.main_gpu == 1 and [d.index for d in main.devices] == [1]
    assert devices.plan(setting="7", **kw).n_gpu_layers == 0  # a device that is not there: CPU


def test_processor_column_and_fraction() -> None:
    assert devices.processor(0.0) == "100% CPU"
    assert devices.processor(1.0) == "100% GPU"
    assert devices.processor(0.52) == "48%/52% CPU/GPU"
    assert GpuPlan(n_gpu_layers=11, total_layers=33).fraction == pytest.approx(1 / 3)
    assert CPU_PLAN.fraction == 0.0 and CPU_PLAN.backend == "CPU"


# loading: params and fallback ----------------------------------------------------------------------------
def test_place_sets_llama_params() -> None:
    import xllamacpp

    one = GpuPlan(n_gpu_layers=20, total_layers=33, main_gpu=1, devices=(_gpu(1, GIB),), split=(0.0, 1.0))
    params = llama_cpp._place(xllamacpp, xllamacpp.CommonParams(), one)
    assert (params.n_gpu_layers, params.main_gpu, params.fit_params) == (20, 1, False)
    assert params.split_mode == xllamacpp.llama_split_mode.LLAMA_SPLIT_MODE_NONE
    two = GpuPlan(n_gpu_layers=33, total_layers=33, devices=(_gpu(0, GIB), _gpu(1, 3 * GIB)), split=(0.25, 0.75))
    params = llama_cpp._place(xllamacpp, xllamacpp.CommonParams(), two)
    assert params.split_mode == xllamacpp.llama_split_mode.LLAMA_SPLIT_MODE_LAYER
    assert list(params.tensor_split[:3]) == pytest.approx([0.25, 0.75, 0.0])
    cpu = llama_cpp._place(xllamacpp, xllamacpp.CommonParams(), CPU_PLAN)
    assert cpu.n_gpu_layers == 0 and cpu.fit_params is True  # the CPU path is llama.cpp's own defaults


def test_load_falls_back_to_fewer_layers_then_cpu(caplog: pytest.LogCaptureFixture) -> None:
    tried: list[int] = []

    def loader(plan: GpuPlan) -> str:
        tried.append(plan.n_gpu_layers)
        if plan.n_gpu_layers > 0:
            raise RuntimeError("CUDA error: out of memory")
        return "server"

    plan = GpuPlan(n_gpu_layers=33, total_layers=33, devices=(_gpu(0, GIB),))
    server, got = llama_cpp._load_with_fallback(loader, plan, "m.gguf")
    assert server == "server" and got.n_gpu_layers == 0 and tried == [33, 16, 8, 0]
    assert "retrying with fewer" in caplog.text

    tried.clear()
    server, got = llama_cpp._load_with_fallback(lambda p: tried.append(p.n_gpu_layers) or (
        "ok" if p.n_gpu_layers <= 16 else (_ for _ in ()).throw(RuntimeError("out of memory"))), plan, "m.gguf")
    assert server == "ok" and got.n_gpu_layers == 16 and tried == [33, 16]


def test_cpu_load_failure_is_a_model_load_error() -> None:
    def broken(_plan: GpuPlan) -> None:
        raise RuntimeError("bad file")

    with pytest.raises(ModelLoadError, match="bad file"):
        llama_cpp._load_with_fallback(broken, CPU_PLAN, "m.gguf")


def test_out_of_memory_during_generation_is_a_clear_engine_error() -> None:
    error = llama_cpp._error_from_llama({"message": "CUDA error: out of memory", "type": "server_error"})
    assert isinstance(error, EngineError) and "num_gpu" in str(error) and "stays loaded" in str(error)
    assert isinstance(llama_cpp._engine_error("ggml_backend_cuda_buffer_type_alloc_buffer: out of memory"),
                      EngineError)


# the manager, with a faked engine load --------------------------------------------------------------------
class _Loads:
    def __init__(self) -> None:
        self.plans: list[GpuPlan] = []

    def __call__(self, engine: llama_cpp.LlamaCppModel) -> None:
        self.plans.append(engine.config.gpu)
        engine._server = object()
        engine.gpu = engine.config.gpu


def test_manager_offloads_to_faked_gpu_and_num_gpu_selects_instance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_llama(monkeypatch, _raw("CUDA0", 24 * GIB))
    loads = _Loads()
    monkeypatch.setattr(llama_cpp.LlamaCppModel, "load", lambda engine: loads(engine))
    settings = make_settings(tmp_path)
    registry = Registry(ModelStore(settings.models_dir))

    async def scenario() -> None:
        manager = ModelManager(settings, registry)
        try:
            model, _ = await manager.ensure_loaded(MODEL)
            assert model.gpu.n_gpu_layers == model.gpu.total_layers == 31  # SmolLM2-135M: 30 blocks + output
            assert model.size_vram == model.size_bytes > 0
            model, _ = await manager.ensure_loaded(MODEL, num_gpu=10)
            assert model.gpu.n_gpu_layers == 10 and 0 < model.size_vram < model.size_bytes
            assert len(manager.loaded()) == 1  # another num_gpu reloads, as another num_ctx does
            model, _ = await manager.ensure_loaded(MODEL, num_gpu=0)
            assert model.size_vram == 0
        finally:
            await manager.close()

    asyncio.run(scenario())
    assert [p.n_gpu_layers for p in loads.plans] == [31, 10, 0]


def test_manager_with_gpu_off_or_no_gpu_keeps_everything_on_cpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _Loads()
    monkeypatch.setattr(llama_cpp.LlamaCppModel, "load", lambda engine: loads(engine))
    _fake_llama(monkeypatch, _raw("CUDA0", 24 * GIB))
    settings = make_settings(tmp_path, gpu="off")
    registry = Registry(ModelStore(settings.models_dir))

    async def scenario(manager: ModelManager) -> int:
        try:
            model, _ = await manager.ensure_loaded(MODEL)
            return model.size_vram
        finally:
            await manager.close()

    assert asyncio.run(scenario(ModelManager(settings, registry))) == 0
    _fake_llama(monkeypatch)  # a CPU-only build: no GPU at all
    assert asyncio.run(scenario(ModelManager(make_settings(tmp_path), registry))) == 0
    assert [p.n_gpu_layers for p in loads.plans] == [0, 0]


def test_modelfile_parameters_and_request_options_pick_the_gpu_request() -> None:
    entry = types.SimpleNamespace(manifest=types.SimpleNamespace(parameters={"num_gpu": 12, "main_gpu": 1}))
    assert ModelManager.requested_gpu(entry) == (12, 1)  # type: ignore[arg-type]
    assert ModelManager.requested_gpu(entry, num_gpu=0) == (0, 1)  # type: ignore[arg-type]
    assert ModelManager.requested_gpu(entry, num_gpu=-1, main_gpu=0) == (None, 0)  # type: ignore[arg-type]
    plain = types.SimpleNamespace(manifest=types.SimpleNamespace(parameters={}))
    assert ModelManager.requested_gpu(plain) == (None, None)  # type: ignore[arg-type]


def test_gpu_options_are_checked() -> None:
    from deskml.core.errors import BadRequest
    from deskml.core.options import gpu_options

    assert gpu_options({"num_gpu": 20, "main_gpu": 1, "temperature": 0}) == {"num_gpu": 20, "main_gpu": 1}
    assert gpu_options(None) == {"num_gpu": None, "main_gpu": None}
    for bad in ({"num_gpu": "all"}, {"main_gpu": 1.5}, {"num_gpu": -2}, {"num_gpu": True}):
        with pytest.raises(BadRequest):
            gpu_options(bad)


def test_num_gpu_without_a_usable_gpu_does_not_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU-only build: num_gpu and main_gpu are accepted and change nothing, as before GPU support."""
    _fake_llama(monkeypatch)
    loads = _Loads()
    monkeypatch.setattr(llama_cpp.LlamaCppModel, "load", lambda engine: loads(engine))
    settings = make_settings(tmp_path)
    registry = Registry(ModelStore(settings.models_dir))

    async def scenario() -> None:
        manager = ModelManager(settings, registry)
        try:
            first, _ = await manager.ensure_loaded(MODEL)
            again, _ = await manager.ensure_loaded(MODEL, num_gpu=20, main_gpu=1)
            assert again is first and first.size_vram == 0
        finally:
            await manager.close()

    asyncio.run(scenario())
    assert len(loads.plans) == 1
