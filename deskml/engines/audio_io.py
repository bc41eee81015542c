"""Audio decoding and encoding with PyAV (FFmpeg libraries bundled in its wheel, no system codecs).

Uploads are decoded from memory, never written to disk, and in a stream of small blocks so a long
recording is resampled piece by piece. PyAV comes with faster-whisper (the `[audio]` extra).
"""

from __future__ import annotations

import io
import logging
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np

from deskml.core.errors import BadRequest, NotImplementedFeature

log = logging.getLogger("deskml.engines.audio_io")

# container format and codec per output format; opus only takes 48/24/16/12/8 kHz
_ENCODERS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None),
    "opus": ("ogg", "libopus", 48000),
    "flac": ("flac", "flac", None),
    "aac": ("adts", "aac", None),
}
# OpenAI's `pcm` is raw 24 kHz signed 16-bit little-endian mono, so clients assume that rate.
PCM_RATE = 24000


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise NotImplementedFeature("audio decoding needs PyAV; install it with: pip install 'deskml[audio]'") from exc
    return av


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def decode_pcm(data: bytes, sample_rate: int = 16000) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks at `sample_rate` from any container/codec FFmpeg knows
    (wav, mp3, m4a/aac, ogg/opus, flac, webm...). Undecodable bytes raise BadRequest."""
    av = _av()
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError) as exc:
        raise BadRequest(f"the upload is not decodable audio ({_reason(exc)})") from exc
    produced = 0
    with container:
        if not container.streams.audio:
            raise BadRequest("the upload has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        try:
            for frame in container.decode(stream):
                frame.pts = None  # the resampler needs none; odd recorder timestamps upset it
                for out in resampler.resample(frame):
                    block = out.to_ndarray().reshape(-1)
                    produced += block.size
                    yield block.astype(np.float32) / 32768.0
            for out in resampler.resample(None):
                block = out.to_ndarray().reshape(-1)
                produced += block.size
                yield block.astype(np.float32) / 32768.0
        except (av.error.FFmpegError, ValueError) as exc:
            if produced == 0:
                raise BadRequest(f"the upload is not decodable audio ({_reason(exc)})") from exc
            # A damaged tail (a recording cut off mid-frame) keeps what decoded before it.
            log.warning("audio decoding stopped early after %d samples: %s", produced, exc)
    if produced == 0:
        raise BadRequest("the upload contains no audio samples")


def decode_all(data: bytes, sample_rate: int = 16000) -> np.ndarray:
    blocks = list(decode_pcm(data, sample_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def _wav(pcm: np.ndarray, sample_rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.astype("<i2").tobytes())
    return out.getvalue()


def _resample(pcm: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate or pcm.size == 0:
        return pcm
    av = _av()
    frame = av.AudioFrame.from_ndarray(pcm.astype(np.int16)[None, :], format="s16", layout="mono")
    frame.sample_rate = source_rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target_rate)
    blocks = [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(blocks).astype(np.int16) if blocks else np.zeros(0, dtype=np.int16)


def encode(pcm: np.ndarray, sample_rate: int, fmt: str) -> tuple[bytes, int]:
    """Encode mono int16 samples; returns the bytes and the sample rate they are at."""
    if fmt == "wav":
        return _wav(pcm, sample_rate), sample_rate
    if fmt == "pcm":
        return _resample(pcm, sample_rate, PCM_RATE).astype("<i2").tobytes(), PCM_RATE
    if fmt not in _ENCODERS:
        raise BadRequest(f"unsupported audio format '{fmt}'", param="response_format")
    av = _av()
    container_format, codec, fixed_rate = _ENCODERS[fmt]
    rate = fixed_rate or sample_rate
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.astype(np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = sample_rate
        # The codec context resamples to its own sample format/rate and re-frames to its frame size.
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue(), rate
