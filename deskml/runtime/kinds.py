"""What kind of model a name is, whether this install can run it, and how listings describe it.

`kind` is deskml's word for the job a model does (`llm`, `embedding`, `asr`, ... as in
`store.ModelKind`); `format` is how its files are laid out (`gguf`, `safetensors`, `onnx`, ...).
A pull of a model whose engine is not installed is refused before any byte moves, naming the
command that adds it: downloading weights nothing here can run only fills the disk.
"""

from __future__ import annotations

from collections.abc import Callable

from deskml.core.errors import NotImplementedFeature
from deskml.core.extras import install_command, where_to_run
from deskml.engines.spec import importable
from deskml.runtime.hub.plan import PullPlan
from deskml.runtime.service_models.manager import ServiceManager

# Modules that run a model of a format no service spec names (a spec's own `requires` rule otherwise).
FORMAT_RUNTIMES: dict[str, tuple[str, list[str]]] = {
    "sentence-transformers": ("embed", ["torch", "transformers"]),
    "wordllama": ("embed", ["wordllama"]),
    "ctranslate2": ("audio", ["faster_whisper", "av"]),
    "piper": ("audio", ["piper", "av"]),
    "onnx": ("vision", ["onnxruntime"]),
    "diffusers": ("image", ["diffusers", "torch"]),
}

# How people call each kind, for messages and the UI.
KIND_LABELS: dict[str, str] = {
    "llm": "language (chat and completion)", "embedding": "embedding", "rerank": "rerank",
    "classify": "image classification", "ocr": "OCR", "detect": "object detection", "asr": "speech-to-text",
    "tts": "text-to-speech", "image": "image generation", "style": "style transfer",
    "text-classify": "text classification",
}


def runtime_missing(services: ServiceManager, names: list[str], kind: str, fmt: str) -> tuple[list[str], str] | None:
    """(modules missing, install command) when this install cannot run a model of `kind`/`fmt`, else None."""
    if kind == "llm":
        return None  # llama.cpp comes with the base install
    for name in names:
        spec = services.find(name, kind)  # type: ignore[arg-type]
        if spec is not None:  # the engine that will serve it, with what that engine needs
            missing = spec.missing()
            return (missing, spec.install_command) if missing else None
    extra, modules = FORMAT_RUNTIMES.get(fmt, ("", []))
    missing = [m for m in modules if not importable(m)]
    return (missing, install_command(extra)) if missing and extra else None


def pull_check(services: ServiceManager) -> Callable[[PullPlan], None]:
    """A check for `Hub.start`: 501 before the download when nothing here can run the model."""

    def check(plan: PullPlan) -> None:
        gap = runtime_missing(services, [plan.reference, plan.name], plan.kind, plan.format)
        if gap is None:
            return
        missing, command = gap
        label = KIND_LABELS.get(plan.kind, plan.kind)
        article = "an" if label[:1].lower() in "aeiou" else "a"
        raise NotImplementedFeature(
            f"'{plan.name}' is {article} {label} model and this deskml cannot run it: it needs "
            f"{', '.join(missing)}, which is not installed. Install it first{where_to_run()}: {command} "
            f"— then restart deskml and pull again. Nothing was downloaded."
        )

    return check
