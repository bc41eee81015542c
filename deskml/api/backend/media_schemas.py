"""Wire types of the seed-style ML-backend routes for speech and images (`/api/audio/*`,
`/api/images/*`): every reply carries `success`, `model` and `time` (seconds), like the seed's
`MLBackendService` expects; errors are `{success: false, error}`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deskml.core.media import MAX_IMAGE_PROMPT_CHARS, MAX_SPEECH_CHARS


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TranscriptChunk(BaseModel):
    """One segment in the shape of a Hugging Face ASR pipeline's `chunks` (`return_timestamps`)."""

    timestamp: tuple[float, float]
    text: str


class TranscribeResponse(BaseModel):
    success: Literal[True] = True
    text: str
    chunks: list[TranscriptChunk]
    language: str
    duration: float
    model: str
    time: float


class SpeakRequest(_Request):
    text: str = Field(..., min_length=1, max_length=MAX_SPEECH_CHARS,
                      description=f"At most {MAX_SPEECH_CHARS} characters (as OpenAI's /v1/audio/speech).")
    model: str | None = None
    voice: str | None = None
    speed: float = Field(1.0, ge=0.25, le=4.0)
    format: Literal["wav", "mp3", "opus", "flac", "aac", "pcm"] = "wav"
    # false: the reply body is the audio file itself; true: JSON with the audio in base64
    base64: bool = False


class SpeakResponse(BaseModel):
    success: Literal[True] = True
    audio: str  # base64
    format: str
    media_type: str
    sample_rate: int
    duration: float
    model: str
    time: float


class VoiceModel(BaseModel):
    name: str
    voices: list[str] = Field(description="Values for `voice`; the first is the model's default.")


class VoicesResponse(BaseModel):
    success: Literal[True] = True
    models: list[VoiceModel]


class ImageGenerateRequest(_Request):
    prompt: str = Field(..., min_length=1, max_length=MAX_IMAGE_PROMPT_CHARS)
    model: str | None = None
    negative_prompt: str | None = Field(None, max_length=MAX_IMAGE_PROMPT_CHARS)
    width: int | None = Field(None, ge=8, le=2048)
    height: int | None = Field(None, ge=8, le=2048)
    steps: int | None = Field(None, ge=1, le=150)
    guidance_scale: float | None = Field(None, ge=0.0, le=50.0)
    seed: int | None = Field(None, ge=0)
    n: int = Field(1, ge=1, le=10)
    format: Literal["png", "jpeg", "webp"] = "png"


class ImageGenerateResponse(BaseModel):
    success: Literal[True] = True
    images: list[str]  # base64
    seeds: list[int]
    width: int
    height: int
    steps: int
    format: str
    model: str
    time: float


class StylizeForm(_Request):
    style: str = "0"
    strength: float = Field(1.0, ge=0.0, le=1.0)
    preserve_color: bool = False
    model: str | None = None
    format: Literal["png", "jpeg", "webp"] = "png"


class StylizeResponse(BaseModel):
    success: Literal[True] = True
    image: str  # base64
    width: int
    height: int
    format: str
    model: str
    time: float
