"""OpenAI wire types for audio and images (`/v1/audio/*`, `/v1/images/generations`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deskml.core.media import MAX_IMAGE_PROMPT_CHARS, MAX_SPEECH_CHARS

TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class _Loose(BaseModel):
    # OpenAI adds fields over time; unknown ones are ignored rather than refused.
    model_config = ConfigDict(extra="ignore")


class TranscriptionForm(_Loose):
    """The non-file fields of a multipart transcription or translation request."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    response_format: TranscriptFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Literal["word", "segment"]] = Field(default_factory=list)


class TranscriptionJson(BaseModel):
    text: str


class SegmentWire(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class WordWire(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionVerbose(BaseModel):
    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[SegmentWire] | None = None
    words: list[WordWire] | None = None


class SpeechRequest(_Loose):
    model: str | None = None
    input: str = Field(..., min_length=1, max_length=MAX_SPEECH_CHARS)
    voice: str | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = None  # steering a voice's style needs an instructable model; Piper has none
    stream_format: Literal["audio", "sse"] = "audio"


class ImageGenerationRequest(_Loose):
    prompt: str = Field(..., min_length=1, max_length=MAX_IMAGE_PROMPT_CHARS)
    model: str | None = None
    n: int = Field(1, ge=1, le=10)
    size: str | None = None  # "WIDTHxHEIGHT" or "auto"
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] = "png"
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    # deskml extras for diffusion models
    negative_prompt: str | None = Field(None, max_length=MAX_IMAGE_PROMPT_CHARS)
    steps: int | None = Field(None, ge=1, le=150)
    guidance_scale: float | None = Field(None, ge=0.0, le=50.0)
    seed: int | None = Field(None, ge=0)


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: str | None = None
    size: str | None = None
