"""Accelerator discovery and placement: which GPUs the engines can use, and how much of a model goes there.

Every query of the outside world goes through one of the `_probe_*` functions below, so tests fake
devices by monkeypatching them. Nothing here imports torch unless asked (`torch_info(import_torch=True)`
from `deskml doctor`, or a service engine that already runs on torch): the CPU install stays light.

NOTE: the GPU paths are tested with faked devices only; see docs/gpu.md for what ran on hardware.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("deskml.engines.devices")

# Free device memory kept back from offload (CUDA context, cuBLAS workspace, other programs), per GPU.
GPU_RESERVE_BYTES = 512 << 20
# Compute buffers llama.cpp allocates on the main GPU besides weights and KV cache.
GRAPH_BYTES = 256 << 20


@dataclass(frozen=True)
class Device:
    """One accelerator as llama.cpp sees it (`index` counts GPUs only, in llama.cpp's order)."""

    index: int
    name: str  # llama.cpp's device name: CUDA0, ROCm0, Vulkan0, MTL0 ...
    description: str
    backend: str  # CUDA, ROCm, Vulkan, Metal, SYCL ...
    memory_total: int
    memory_free: int


@dataclass(frozen=True)
class TorchInfo:
    version: str
    cuda: bool
    cuda_version: str | None
    mps: bool
    devices: list[str] = field(default_factory=list)  # names of CUDA devices


_BACKENDS = {"MTL": "Metal", "CUDA": "CUDA", "ROCM": "ROCm", "HIP": "ROCm", "VULKAN": "Vulkan", "SYCL": "SYCL"}


def _backend_of(name: str) -> str:
    stem = re.sub(r"\d+$", "", name).upper()
    return _BACKENDS.get(stem, stem or "GPU")


# boundary ----------------------------------------------------------------------------------------
def _probe_llama_devices() -> list[dict[str, Any]]:
    """xllamacpp.get_device_info(): one dict per ggml backend device, the CPU included."""
    try:
        import xllamacpp
    except ImportError:  # pragma: no cover - xllamacpp is a core dependency
        return []
    try:
        return list(xllamacpp.get_device_info())
    except Exception as exc:  # a broken driver must not stop the server
        log.warning("llama.cpp could not list devices: %s", exc)
        return []


def _probe_torch(import_torch: bool) -> Any:
    """The torch module if it is (or, when asked, can be) imported; None otherwise."""
    if "torch" in sys.modules:
        return sys.modules["torch"]
    if not import_torch or importlib.util.find_spec("torch") is None:
        return None
    try:
        return importlib.import_module("torch")
    except Exception:  # a broken CUDA install raises on import
        return None


def _probe_onnx_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:
        return []


def _probe_ctranslate2_cuda() -> int:
    if importlib.util.find_spec("ctranslate2") is None:
        return 0
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:
        return 0


# discovery ---------------------------------------------------------------------------------------
def _device_type(raw: dict[str, Any]) -> str:
    value = raw.get("type")
    text = str(getattr(value, "name", value) or "").upper()
    return text.rsplit("_", 1)[-1] if text else ""


def llama_devices() -> list[Device]:
    """The GPUs (discrete or integrated) the installed llama.cpp build can offload to; [] on a CPU build."""
    gpus: list[Device] = []
    for raw in _probe_llama_devices():
        if _device_type(raw) not in {"GPU", "IGPU"}:
            continue
        name = str(raw.get("name", ""))
        gpus.append(Device(
            index=len(gpus), name=name, description=str(raw.get("description", "")), backend=_backend_of(name),
            memory_total=int(raw.get("memory_total", 0) or 0), memory_free=int(raw.get("memory_free", 0) or 0),
        ))
    return gpus


def torch_info(import_torch: bool = False) -> TorchInfo | None:
    torch = _probe_torch(import_torch)
    if torch is None:
        return None
    try:
        cuda = bool(torch.cuda.is_available())
        names = [str(torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())] if cuda else []
        backends = getattr(torch, "backends", None)
        mps = bool(backends and getattr(backends, "mps", None) and backends.mps.is_available())
        return TorchInfo(version=str(getattr(torch, "__version__", "")), cuda=cuda,
                         cuda_version=getattr(getattr(torch, "version", None), "cuda", None), mps=mps, devices=names)
    except Exception as exc:
        log.warning("torch could not list devices: %s", exc)
        return None


def onnx_gpu_providers() -> list[str]:
    """onnxruntime's accelerated execution providers of the installed build, best first."""
    available = set(_probe_onnx_providers())
    order = ["CUDAExecutionProvider", "ROCMExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider"]
    return [p for p in order if p in available]


def ctranslate2_cuda_devices() -> int:
    return _probe_ctranslate2_cuda()


# selection ---------------------------------------------------------------------------------------
def parse_gpu_setting(value: str) -> str | list[int]:
    """DESKML_GPU: "auto", "off", or comma-separated device indices ("0", "0,1")."""
    text = value.strip().lower()
    if text in {"", "auto"}:
        return "auto"
    if text in {"off", "none", "cpu", "-1"}:
        return "off"
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"DESKML_GPU must be auto, off or device numbers like 0,1, not {value!r}") from None
    if not ids or any(i < 0 for i in ids):
        raise ValueError(f"DESKML_GPU must be auto, off or device numbers like 0,1, not {value!r}")
    return ids


def select_devices(setting: str, devices: list[Device]) -> list[Device]:
    """The GPUs a model may use under DESKML_GPU; unknown indices are skipped with a warning."""
    chosen = parse_gpu_setting(setting)
    if chosen == "off":
        return []
    if chosen == "auto":
        return list(devices)
    by_index = {d.index: d for d in devices}
    missing = [i for i in chosen if i not in by_index]
    if missing:
        log.warning("DESKML_GPU names device(s) %s that llama.cpp does not see; using %s",
                    missing, [d.index for d in devices if d.index in chosen] or "the CPU")
    return [by_index[i] for i in chosen if i in by_index]


def auto_layers(*, block_count: int, model_bytes: int, kv_bytes: int, free: list[int],
                reserve: int = GPU_RESERVE_BYTES, graph: int = GRAPH_BYTES) -> int:
    """How many layers fit the GPUs' free memory, counted as llama.cpp's n_gpu_layers (block_count + 1 = all,
    the output layer included). Each layer is taken as an equal share of weights and KV cache."""
    if block_count <= 0 or not free:
        return 0
    usable = sum(max(0, f - reserve) for f in free) - graph
    per_layer = (model_bytes + kv_bytes) / (block_count + 1)
    if usable <= 0 or per_layer <= 0:
        return 0
    return max(0, min(block_count + 1, int(usable // per_layer)))


@dataclass(frozen=True)
class GpuPlan:
    """Where one llama.cpp load puts the model: n_gpu_layers on `devices`, the rest on the CPU."""

    n_gpu_layers: int = 0
    total_layers: int = 0  # block_count + 1
    main_gpu: int = 0
    devices: tuple[Device, ...] = ()
    split: tuple[float, ...] = ()  # llama.cpp tensor_split, one share per llama.cpp GPU index

    @property
    def fraction(self) -> float:
        if self.total_layers <= 0 or self.n_gpu_layers <= 0:
            return 0.0
        return min(1.0, self.n_gpu_layers / self.total_layers)

    @property
    def backend(self) -> str:
        return self.devices[0].backend if self.devices and self.n_gpu_layers > 0 else "CPU"

    def with_layers(self, layers: int) -> GpuPlan:
        return GpuPlan(n_gpu_layers=max(0, layers), total_layers=self.total_layers, main_gpu=self.main_gpu,
                       devices=self.devices, split=self.split)


CPU_PLAN = GpuPlan()


def plan(*, setting: str, devices: list[Device], block_count: int, model_bytes: int, kv_bytes: int,
         num_gpu: int | None = None, main_gpu: int | None = None) -> GpuPlan:
    """The offload for one load. num_gpu None or negative = automatic from free memory; main_gpu picks
    the device that holds the whole model when it is given (llama.cpp's split_mode none)."""
    usable = select_devices(setting, devices)
    total = max(0, block_count) + 1
    if not usable or num_gpu == 0:
        return GpuPlan(total_layers=total)
    if main_gpu is not None:
        main = next((d for d in usable if d.index == main_gpu), None)
        if main is None:
            log.warning("main_gpu %d is not among the usable GPUs %s; ignoring it", main_gpu, [d.index for d in usable])
        else:
            usable = [main]
    if num_gpu is None or num_gpu < 0:
        layers = auto_layers(block_count=block_count, model_bytes=model_bytes, kv_bytes=kv_bytes,
                             free=[d.memory_free for d in usable])
    else:
        layers = min(num_gpu, total)
    width = max(d.index for d in devices) + 1
    free = {d.index: max(1, d.memory_free) for d in usable}
    split = tuple(free.get(i, 0) / sum(free.values()) for i in range(width))
    return GpuPlan(n_gpu_layers=layers, total_layers=total, main_gpu=usable[0].index, devices=tuple(usable),
                   split=split)


def fallback_layers(layers: int) -> list[int]:
    """Layer counts to try in turn when a load runs out of device memory: fewer, then the CPU."""
    steps = [layers, layers // 2, layers // 4, 0]
    return [n for i, n in enumerate(steps) if n >= 0 and n not in steps[:i] and (n == 0 or n <= layers)]


def processor(fraction: float) -> str:
    """Ollama's PROCESSOR column: 100% CPU, 100% GPU, or 48%/52% CPU/GPU."""
    gpu = round(fraction * 100)
    if gpu <= 0:
        return "100% CPU"
    if gpu >= 100:
        return "100% GPU"
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


# service models ----------------------------------------------------------------------------------
SERVICE_KINDS = ("embedding", "classify", "detect", "asr", "image")  # the kinds that can use a GPU


def parse_services_setting(value: str) -> str:
    """DESKML_GPU_SERVICES normalised; an unknown kind is an error at start, not a silent CPU run."""
    text = value.strip().lower()
    if text in {"", "auto", "on", "off", "none", "cpu"}:
        return text or "auto"
    kinds = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [k for k in kinds if k not in SERVICE_KINDS]
    if unknown:
        raise ValueError(f"DESKML_GPU_SERVICES: unknown kind(s) {unknown}; use auto, off or some of "
                         f"{', '.join(SERVICE_KINDS)}")
    return ",".join(kinds)


def services_allowed(setting: str, kind: str) -> bool:
    """DESKML_GPU_SERVICES: auto (every kind may use a GPU), off, or the kinds that may ("embedding,image")."""
    text = setting.strip().lower()
    if text in {"", "auto", "on"}:
        return True
    if text in {"off", "none", "cpu"}:
        return False
    return kind in {part.strip() for part in text.split(",")}


def torch_device(torch: Any, kind: str, setting: str) -> str:
    """"cuda", "mps" or "cpu" for a torch service model of `kind`."""
    if not services_allowed(setting, kind):
        return "cpu"
    try:
        if torch.cuda.is_available():
            return "cuda"
        backends = getattr(torch, "backends", None)
        if backends is not None and getattr(backends, "mps", None) is not None and backends.mps.is_available():
            return "mps"
    except Exception:  # a half-installed CUDA runtime: the CPU still works
        return "cpu"
    return "cpu"


def onnx_providers(kind: str, setting: str) -> list[str]:
    """Execution providers for an onnxruntime session: the GPU one when that build is installed, CPU last."""
    gpu = onnx_gpu_providers()[:1] if services_allowed(setting, kind) else []
    return [*gpu, "CPUExecutionProvider"]


def ctranslate2_placement(kind: str, setting: str, cpu_compute: str = "int8") -> tuple[str, str]:
    """(device, compute_type) for CTranslate2 (faster-whisper)."""
    if services_allowed(setting, kind) and ctranslate2_cuda_devices() > 0:
        return "cuda", "float16"
    return "cpu", cpu_compute
