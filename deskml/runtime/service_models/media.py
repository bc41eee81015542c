"""Speech and image requests: find the model, load it once, run the blocking engine in a worker
thread and hand its events to the event loop as they come.

Every dialect calls these; a client that goes away sets the cancel flag, which the engines check
between segments, utterances and diffusion steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TypeVar

from deskml.core import media as m
from deskml.core.errors import BadRequest, NotImplementedFeature
from deskml.core.extras import install_command
from deskml.engines.spec import ServiceKind, ServiceSpec, importable
from deskml.runtime.service_models.manager import ServiceManager

T = TypeVar("T")
_END = object()
_PARAGRAPH_PAUSE = 0.35  # seconds of silence between paragraphs spoken as separate utterances


class MediaService:
    def __init__(self, services: ServiceManager, image_models_dir: Path | None = None) -> None:
        self.services = services
        self.image_models_dir = image_models_dir

    # plumbing ----------------------------------------------------------------------------------
    async def _events(self, spec: ServiceSpec, work: Callable[[threading.Event, Callable[[Any], None]], None],
                      ) -> AsyncGenerator[Any, None]:
        """Run `work(cancel, emit)` in a worker thread and yield what it emits, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: Any, error: BaseException | None = None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                loop.call_soon_threadsafe(queue.put_nowait, (item, error))

        def pump() -> None:
            try:
                work(cancel, put)
            except BaseException as exc:
                put(_END, exc)
                return
            put(_END)

        task = asyncio.ensure_future(self.services.run(spec, pump))
        try:
            while True:
                item, error = await queue.get()
                if item is _END:
                    if error is not None:
                        raise error
                    return
                yield item
        finally:
            cancel.set()
            with contextlib.suppress(BaseException):
                await task

    # speech-to-text ----------------------------------------------------------------------------
    def asr_spec(self, name: str | None, task: str = "transcribe") -> ServiceSpec:
        if name is None and task == "translate":
            # Translating needs a multilingual model; prefer one over the English-only default.
            for spec in self.services.specs:
                if spec.kind == "asr" and spec.options.get("multilingual") and spec.available():
                    return self.services.get_spec(spec.name, "asr")
        return self.services.get_spec(name, "asr")

    async def transcribe(self, req: m.TranscribeRequest) -> AsyncGenerator[m.TranscriptEvent, None]:
        started = time.perf_counter_ns()
        spec = self.asr_spec(req.model, req.task)
        engine, load_ns = await self.services.engine(spec)

        def work(cancel: threading.Event, emit: Callable[[Any], None]) -> None:
            for event in engine.transcribe(req, cancel):
                emit(event)
                if cancel.is_set():
                    return

        events = self._events(spec, work)
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, m.TranscriptDone):
                    event = event.model_copy(update={
                        "model": spec.name, "load_ns": load_ns, "total_ns": time.perf_counter_ns() - started})
                yield event

    async def transcribe_all(self, req: m.TranscribeRequest) -> m.Transcript:
        events = [event async for event in self.transcribe(req)]
        return m.collect_transcript(events, req.task)

    # text-to-speech ----------------------------------------------------------------------------
    async def speak(self, req: m.SpeakRequest) -> m.SpeechResult:
        started = time.perf_counter_ns()
        if not 0.25 <= req.speed <= 4.0:
            raise BadRequest(f"speed must be between 0.25 and 4.0, got {req.speed}", param="speed")
        spec = self.services.get_spec(req.model, "tts")
        voices = [str(v) for v in spec.options.get("voices", [])]
        if req.voice and voices and req.voice.lower() not in {v.lower() for v in voices}:
            raise BadRequest(f"unknown voice '{req.voice}' for {spec.name}; voices: {', '.join(voices)}",
                             param="voice")
        engine, load_ns = await self.services.engine(spec)

        def work(cancel: threading.Event, emit: Callable[[Any], None]) -> None:
            for chunk in engine.speak(req.text, req.speed, cancel):
                emit(chunk)

        chunks = [chunk async for chunk in self._events(spec, work)]
        try:
            import numpy as np

            from deskml.engines import audio_io
        except ImportError as exc:
            raise NotImplementedFeature(f"speech output needs numpy and PyAV: {spec.install_command}") from exc
        rate = int(chunks[0][1]) if chunks else engine.sample_rate
        pause = np.zeros(int(rate * _PARAGRAPH_PAUSE), dtype=np.int16)
        pieces: list[Any] = []
        for index, (samples, _rate) in enumerate(chunks):
            if index:
                pieces.append(pause)
            pieces.append(samples)
        pcm = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        audio, out_rate = await self.services.run(spec, audio_io.encode, pcm, rate, req.format)
        return m.SpeechResult(
            model=spec.name, audio=audio, format=req.format, media_type=m.AUDIO_MEDIA_TYPES[req.format],
            sample_rate=out_rate, duration=round(pcm.size / rate, 3), load_ns=load_ns,
            total_ns=time.perf_counter_ns() - started,
        )

    # images ------------------------------------------------------------------------------------
    def image_spec(self, name: str | None) -> ServiceSpec:
        if name is None and not any(s.kind == "image" for s in self.services.specs):
            where = f" into {self.image_models_dir}" if self.image_models_dir else ""
            # The install command only where the engine itself is missing: with it installed, it misleads.
            engine = "" if all(importable(mod) for mod in ("torch", "diffusers")) else \
                f"; the engine needs: {install_command('image')}"
            raise NotImplementedFeature(
                f"no image model is installed: put a diffusers pipeline directory (save_pretrained layout){where} "
                f"and restart{engine}")
        return self.services.get_spec(name, "image")

    async def generate_image(self, req: m.ImageRequest) -> AsyncGenerator[m.ImageEvent, None]:
        started = time.perf_counter_ns()
        if not 1 <= req.n <= 10:
            raise BadRequest(f"n must be between 1 and 10, got {req.n}", param="n")
        if not req.prompt.strip():
            raise BadRequest("prompt is required", param="prompt")
        spec = self.image_spec(req.model)
        engine, load_ns = await self.services.engine(spec)
        engine.resolve(req)  # size and step errors become a 400 before any streaming starts

        def work(cancel: threading.Event, emit: Callable[[Any], None]) -> None:
            from deskml.engines.diffusers_engine import Cancelled

            def progress(completed: int, total: int) -> None:
                emit(m.ImageProgress(completed=completed, total=total))

            with contextlib.suppress(Cancelled):
                emit(engine.generate(req, progress, cancel))

        events = self._events(spec, work)
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, m.ImageDone):
                    event = event.model_copy(update={"load_ns": load_ns,
                                                     "total_ns": time.perf_counter_ns() - started})
                yield event

    async def generate_image_all(self, req: m.ImageRequest) -> m.ImageDone:
        done: m.ImageDone | None = None
        async for event in self.generate_image(req):
            if isinstance(event, m.ImageDone):
                done = event
        if done is None:
            raise BadRequest("image generation was cancelled")
        return done

    async def load(self, name: str | None, kind: ServiceKind) -> tuple[ServiceSpec, int]:
        spec = self.services.get_spec(name, kind)
        _engine, load_ns = await self.services.engine(spec)
        return spec, load_ns

    # style transfer ----------------------------------------------------------------------------
    async def stylize(self, req: m.StyleRequest) -> m.StyleResult:
        started = time.perf_counter_ns()
        if not 0.0 <= req.strength <= 1.0:
            raise BadRequest(f"strength must be between 0 and 1, got {req.strength}", param="strength")
        spec = self.services.get_spec(req.model, "style")
        engine, load_ns = await self.services.engine(spec)
        result: m.StyleResult = await self.services.run(spec, engine.stylize, req)
        return result.model_copy(update={"load_ns": load_ns, "total_ns": time.perf_counter_ns() - started})
