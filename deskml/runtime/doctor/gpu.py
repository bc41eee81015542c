"""`deskml doctor`'s GPU checks: the GPUs on this machine, the backends the installed engines were built
with, and the mismatch users hit most (a GPU, but a CPU-only build), with the command that fixes it.

Runs without importing torch (its wheel's version says how it was built), so the doctor stays quick.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
from collections.abc import Callable
from pathlib import Path

from deskml.engines import devices
from deskml.runtime.doctor.check import Check
from deskml.settings import Settings

XLLAMACPP_INDEX = "https://xorbitsai.github.io/xllamacpp/whl"
TORCH_INDEX = "https://download.pytorch.org/whl"

Runner = Callable[..., str | None]


def _cuda_driver(run: Runner) -> tuple[int, int] | None:
    """The newest CUDA version the installed NVIDIA driver supports (from nvidia-smi's banner)."""
    banner = run("nvidia-smi") or ""
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", banner)
    return (int(found.group(1)), int(found.group(2))) if found else None


def xllamacpp_fix(cuda: tuple[int, int] | None) -> str | None:
    """The pip line for xllamacpp's CUDA wheel this driver can run (its docs: cu128 and cu132 indexes)."""
    if cuda is None or cuda >= (13, 2):
        wheel = "cu132" if cuda is not None else "cu128"
    elif cuda >= (12, 8):
        wheel = "cu128"
    else:
        return None
    return f"pip install xllamacpp --force-reinstall --index-url {XLLAMACPP_INDEX}/{wheel}"


def torch_fix(cuda: tuple[int, int] | None) -> str:
    wheel = "cu118"
    if cuda is not None and cuda >= (12, 8):
        wheel = "cu128"
    elif cuda is not None and cuda >= (12, 6):
        wheel = "cu126"
    return f"pip install torch --force-reinstall --index-url {TORCH_INDEX}/{wheel}"


def torch_build() -> str | None:
    """'cuda', 'rocm' or 'cpu' from the installed torch wheel's version (2.9.0+cpu, +cu128, +rocm6.4);
    None when torch is not installed. A plain PyPI version is a CUDA build on Linux and Windows."""
    info = devices.torch_info()  # only when torch is already imported: then ask it directly
    if info is not None:
        return "cuda" if info.cuda else ("mps" if info.mps else "cpu")
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    local = version.partition("+")[2]
    if local.startswith("cu"):
        return "cuda"
    if local.startswith("rocm"):
        return "rocm"
    if local == "cpu" or platform.system() == "Darwin":
        return "cpu" if platform.machine() != "arm64" else "mps"
    return "cuda"


def _xllamacpp_version() -> str:
    try:
        return importlib.metadata.version("xllamacpp")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def gpu_checks(settings: Settings, run: Runner) -> list[Check]:
    listed = [line.strip() for line in (run("nvidia-smi", "-L") or "").splitlines() if line.strip()]
    amd = Path("/dev/kfd").exists()
    apple = platform.system() == "Darwin" and platform.machine() == "arm64"
    engine = devices.llama_devices()
    backends = sorted({d.backend for d in engine})
    checks: list[Check] = []
    if listed:
        checks.append(Check(name="gpu", status="info", message="NVIDIA GPU(s): " + "; ".join(listed)))
    elif amd:
        checks.append(Check(name="gpu", status="info", message="an AMD GPU (ROCm /dev/kfd) is present"))
    elif apple:
        checks.append(Check(name="gpu", status="info", message="Apple Silicon: Metal GPU"))
    version = _xllamacpp_version()
    if engine:
        where = ", ".join(f"{d.name} {d.description} ({d.memory_free / 2**30:.1f} GiB free)" for d in engine)
        if settings.gpu == "off":
            checks.append(Check(name="llm-gpu", status="info",
                                message=f"xllamacpp {version} can use {where}, "
                                "but DESKML_GPU=off keeps LLMs on the CPU",
                                fix="unset DESKML_GPU (or set it to auto)"))
        else:
            checks.append(Check(name="llm-gpu", status="ok",
                                message=f"xllamacpp {version} ({', '.join(backends)} build): LLMs offload to {where}"))
    elif listed:
        cuda = _cuda_driver(run)
        fix = xllamacpp_fix(cuda)
        checks.append(Check(
            name="llm-gpu", status="warn",
            message=f"an NVIDIA GPU is present but xllamacpp {version} is a CPU-only build: LLMs run on the CPU",
            fix=fix or "update the NVIDIA driver to one that supports CUDA 12.8 or newer, then: "
            + (xllamacpp_fix((12, 8)) or ""),
        ))
    elif amd:
        checks.append(Check(
            name="llm-gpu", status="warn",
            message=f"an AMD GPU is present but xllamacpp {version} is a CPU-only build: LLMs run on the CPU",
            fix=f"pip install xllamacpp --force-reinstall --index-url {XLLAMACPP_INDEX}/rocm-6.4.1 "
            f"(ROCm 7: {XLLAMACPP_INDEX}/rocm-7.2.4; any GPU with Vulkan drivers: {XLLAMACPP_INDEX}/vulkan)",
        ))
    elif apple:
        checks.append(Check(name="llm-gpu", status="warn",
                            message=f"xllamacpp {version} does not see the Metal GPU: LLMs run on the CPU",
                            fix="pip install -U --force-reinstall xllamacpp"))
    else:
        checks.append(Check(name="llm-gpu", status="info", message="no GPU found: models run on the CPU"))
    build = torch_build()
    if build is not None and (listed or amd):
        wanted = "cuda" if listed else "rocm"
        if build != wanted:
            rocm = f"pip install torch --force-reinstall --index-url {TORCH_INDEX}/rocm6.4"
            fix = torch_fix(_cuda_driver(run)) if listed else rocm
            checks.append(Check(name="torch-gpu", status="warn",
                                message=f"torch is a {build.upper()} build: embedding, classification and image "
                                "models run on the CPU although a GPU is present", fix=fix))
        else:
            checks.append(Check(name="torch-gpu", status="ok", message=f"torch is a {build.upper()} build"))
    if settings.gpu_services != "auto":
        checks.append(Check(name="service-gpu", status="info",
                            message=f"DESKML_GPU_SERVICES={settings.gpu_services}: "
                            "the other service kinds stay on the CPU"))
    return checks
