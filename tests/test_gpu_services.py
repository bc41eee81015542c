"""Service engines when a GPU is reported but cannot be used (faked: this machine's torch and CTranslate2
have no CUDA): they log and run on the CPU, never fail the load, and say which device they use."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from deskml.engines import devices
from deskml.runtime.service_models.catalog import service_specs
from deskml.runtime.service_models.media_catalog import media_specs
from tests.conftest import make_settings


@pytest.mark.slow  # the real MiniLM
def test_embedding_model_falls_back_to_cpu_when_cuda_is_unusable(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from deskml.engines.sentence import MiniLMEmbedder

    spec = next(s for s in service_specs() if s.name == "all-minilm")
    if not spec.available():
        pytest.skip("all-minilm weights are not installed")
    monkeypatch.setattr(devices, "torch_device", lambda _torch, _kind, _setting: "cuda")
    engine = MiniLMEmbedder(spec)
    with caplog.at_level(logging.WARNING, "deskml.engines.sentence"):
        engine.load()
    assert engine.device == "cpu" and "running on the CPU" in caplog.text
    vectors, counts = engine.embed(["still works"])
    assert len(vectors[0]) == 384 and counts[0] > 0


@pytest.mark.slow  # the real MiniLM
def test_embedding_model_stays_on_cpu_by_default() -> None:
    from deskml.engines.sentence import MiniLMEmbedder

    spec = next(s for s in service_specs() if s.name == "all-minilm")
    if not spec.available():
        pytest.skip("all-minilm weights are not installed")
    engine = MiniLMEmbedder(spec)
    engine.load()
    assert engine.device == "cpu" and str(next(engine._model.parameters()).device) == "cpu"


@pytest.mark.slow  # the real Whisper
def test_whisper_falls_back_to_cpu_when_ctranslate2_cuda_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    spec = next(s for s in media_specs(make_settings(tmp_path)) if s.name == "whisper:tiny.en")
    if not spec.available():
        pytest.skip("whisper tiny.en is not installed")
    from deskml.engines.whisper import WhisperEngine

    monkeypatch.setattr(devices, "_probe_ctranslate2_cuda", lambda: 1)  # "a CUDA device", on a CPU-only build
    engine = WhisperEngine(spec)
    with caplog.at_level(logging.WARNING, "deskml.engines.whisper"):
        engine.load()
    assert engine.device == "cpu" and "loading on the CPU" in caplog.text and engine.model is not None
