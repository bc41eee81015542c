"""Pure translations between OpenAI's audio/image wire types and deskml's media types."""

from __future__ import annotations

import base64
import time
from typing import Any

from deskml.api.openai import media_schemas as wire
from deskml.core import media as m
from deskml.core.errors import BadRequest
from deskml.core.languages import language_code, language_name
from deskml.runtime.service_models.media_catalog import OPENAI_GENERIC_MODELS

# OpenAI's voices; each means "the model's own voice" here (a Piper model speaks with one voice).
OPENAI_VOICES = {"alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                 "shimmer", "verse"}


def model_name(name: str | None, kind: str) -> str | None:
    """None (the default model of the kind) for empty names and OpenAI's own model names."""
    if not name or not name.strip() or name.strip().lower() in OPENAI_GENERIC_MODELS.get(kind, set()):
        return None
    return name.strip()


def transcribe_request(form: wire.TranscriptionForm, audio: bytes, task: str) -> m.TranscribeRequest:
    words = "word" in form.timestamp_granularities and form.response_format == "verbose_json"
    return m.TranscribeRequest(
        model=model_name(form.model, "asr"), audio=audio,
        language=language_code(form.language) if task == "transcribe" else None, prompt=form.prompt or None,
        temperature=form.temperature, task="translate" if task == "translate" else "transcribe",
        word_timestamps=words,
    )


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: list[m.Segment]) -> str:
    blocks = [f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
              for i, s in enumerate(segments, start=1)]
    return "\n".join(blocks)


def vtt(segments: list[m.Segment]) -> str:
    blocks = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def verbose(transcript: m.Transcript, granularities: list[str]) -> wire.TranscriptionVerbose:
    want_segments = not granularities or "segment" in granularities
    want_words = "word" in granularities
    return wire.TranscriptionVerbose(
        task=transcript.task, language=language_name(transcript.language), duration=transcript.duration,
        text=transcript.text,
        segments=[wire.SegmentWire(
            id=s.id, seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=s.tokens, temperature=s.temperature,
            avg_logprob=s.avg_logprob, compression_ratio=s.compression_ratio, no_speech_prob=s.no_speech_prob,
        ) for s in transcript.segments] if want_segments else None,
        words=[wire.WordWire(word=w.word.strip(), start=w.start, end=w.end) for w in transcript.words]
        if want_words else None,
    )


def transcription_body(transcript: m.Transcript, form: wire.TranscriptionForm) -> tuple[str | dict[str, Any], str]:
    """The reply body and its media type for `response_format`."""
    fmt = form.response_format
    if fmt == "text":
        return transcript.text + "\n", "text/plain; charset=utf-8"
    if fmt == "srt":
        return srt(transcript.segments), "text/plain; charset=utf-8"
    if fmt == "vtt":
        return vtt(transcript.segments), "text/vtt; charset=utf-8"
    if fmt == "verbose_json":
        body = verbose(transcript, list(form.timestamp_granularities)).model_dump(exclude_none=True)
        return body, "application/json"
    return wire.TranscriptionJson(text=transcript.text).model_dump(), "application/json"


def speak_request(body: wire.SpeechRequest) -> m.SpeakRequest:
    if body.stream_format == "sse":
        raise BadRequest("stream_format 'sse' is not supported; use 'audio'", param="stream_format")
    voice = body.voice.strip() if body.voice else None
    if voice and voice.lower() in OPENAI_VOICES:
        voice = None
    return m.SpeakRequest(model=model_name(body.model, "tts"), text=body.input, voice=voice, speed=body.speed,
                          format=body.response_format)


def image_size(size: str | None) -> tuple[int | None, int | None]:
    if not size or size == "auto":
        return None, None
    width, sep, height = size.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise BadRequest(f"size must look like 512x512 or be 'auto', got '{size}'", param="size")
    return int(width), int(height)


def image_request(body: wire.ImageGenerationRequest) -> m.ImageRequest:
    width, height = image_size(body.size)
    return m.ImageRequest(
        model=model_name(body.model, "image"), prompt=body.prompt, negative_prompt=body.negative_prompt,
        width=width, height=height, steps=body.steps, guidance_scale=body.guidance_scale, seed=body.seed, n=body.n,
        format=body.output_format,
    )


def images_response(done: m.ImageDone, response_format: str | None) -> wire.ImagesResponse:
    """b64_json by default; `url` gets a data: URL (no image is stored on the server)."""
    data = []
    for image in done.images:
        encoded = base64.b64encode(image).decode("ascii")
        if response_format == "url":
            data.append(wire.ImageData(url=f"data:{m.IMAGE_MEDIA_TYPES[done.format]};base64,{encoded}"))
        else:
            data.append(wire.ImageData(b64_json=encoded))
    return wire.ImagesResponse(created=int(time.time()), data=data, output_format=done.format,
                               size=f"{done.width}x{done.height}")
