"""Internal request, event and result types for speech and image services.

Every dialect (OpenAI, Ollama, the seed's ML-backend routes) translates its wire types to these;
the runtime and the engines only see these. Engines are stream-first: transcription yields
segments as they are decoded, image generation yields progress before the image.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# What the speech engine can encode (OpenAI's /v1/audio/speech formats).
AudioFormat = Literal["wav", "mp3", "opus", "flac", "aac", "pcm"]
ImageFormat = Literal["png", "jpeg", "webp"]

AUDIO_MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav", "mp3": "audio/mpeg", "opus": "audio/ogg", "flac": "audio/flac",
    "aac": "audio/aac", "pcm": "audio/pcm",
}
IMAGE_MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

# Input bounds whose cost grows with size, the same in every dialect. Speech takes about as long to
# make as to say, so the text is capped as OpenAI caps /v1/audio/speech; a longer text is sent in parts.
MAX_SPEECH_CHARS = 4096
# Diffusion models read only the first 77 tokens; the cap keeps tokenising a huge prompt out (OpenAI's
# gpt-image-1 allows 32,000 characters).
MAX_IMAGE_PROMPT_CHARS = 32_000


# speech-to-text ----------------------------------------------------------------------------------
class TranscribeRequest(BaseModel):
    model: str | None = None  # None = the default speech-to-text model
    audio: bytes
    language: str | None = None  # ISO-639-1 code; None = detect
    prompt: str | None = None
    temperature: float = 0.0
    task: Literal["transcribe", "translate"] = "transcribe"
    word_timestamps: bool = False


class Word(BaseModel):
    word: str
    start: float
    end: float
    probability: float = 0.0


class Segment(BaseModel):
    kind: Literal["segment"] = "segment"
    id: int
    seek: int = 0  # mel frame (10 ms) where the decoding window began, as Whisper reports it
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] = Field(default_factory=list)


class TranscriptDone(BaseModel):
    kind: Literal["done"] = "done"
    language: str = ""
    language_probability: float = 0.0
    duration: float = 0.0  # seconds of audio
    model: str = ""
    load_ns: int = 0
    total_ns: int = 0


TranscriptEvent = Segment | TranscriptDone


class Transcript(BaseModel):
    """A whole transcription, collected from the event stream."""

    model: str
    text: str
    language: str
    duration: float
    task: Literal["transcribe", "translate"] = "transcribe"
    segments: list[Segment] = Field(default_factory=list)
    load_ns: int = 0
    total_ns: int = 0

    @property
    def words(self) -> list[Word]:
        return [word for segment in self.segments for word in segment.words]


def collect_transcript(events: list[TranscriptEvent], task: Literal["transcribe", "translate"]) -> Transcript:
    segments = [e for e in events if isinstance(e, Segment)]
    done = next((e for e in events if isinstance(e, TranscriptDone)), TranscriptDone())
    return Transcript(
        model=done.model, text="".join(s.text for s in segments).strip(), language=done.language,
        duration=done.duration, task=task, segments=segments, load_ns=done.load_ns, total_ns=done.total_ns,
    )


# text-to-speech ----------------------------------------------------------------------------------
class SpeakRequest(BaseModel):
    model: str | None = None
    text: str
    voice: str | None = None
    speed: float = 1.0  # 0.25 .. 4.0, as OpenAI's `speed`
    format: AudioFormat = "wav"


class SpeechResult(BaseModel):
    model: str
    audio: bytes  # encoded in `format`
    format: AudioFormat
    media_type: str
    sample_rate: int
    duration: float  # seconds
    load_ns: int = 0
    total_ns: int = 0


# images ------------------------------------------------------------------------------------------
class ImageRequest(BaseModel):
    model: str | None = None
    prompt: str
    negative_prompt: str | None = None
    width: int | None = None  # None = the model's native size
    height: int | None = None
    steps: int | None = None  # None = the model's default
    guidance_scale: float | None = None
    seed: int | None = None  # None = random; image i uses seed + i
    n: int = 1
    format: ImageFormat = "png"


class ImageProgress(BaseModel):
    kind: Literal["progress"] = "progress"
    completed: int
    total: int


class ImageDone(BaseModel):
    kind: Literal["image"] = "image"
    model: str
    images: list[bytes]
    seeds: list[int]
    width: int
    height: int
    steps: int
    format: ImageFormat = "png"
    load_ns: int = 0
    total_ns: int = 0


ImageEvent = ImageProgress | ImageDone


class StyleRequest(BaseModel):
    model: str | None = None
    image: bytes
    style: str = "0"  # a built-in style index 0-25 or a blend such as "3:0.5,12:0.5"
    style_image: bytes | None = None  # any picture used as the style instead
    strength: float = 1.0
    preserve_color: bool = False
    format: ImageFormat = "png"


class StyleResult(BaseModel):
    model: str
    image: bytes
    format: ImageFormat
    width: int
    height: int
    load_ns: int = 0
    total_ns: int = 0
