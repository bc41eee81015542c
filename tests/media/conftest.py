"""Fixtures for speech and image tests: espeak-ng speech, audio re-encoded with PyAV, a tiny
randomly initialised Stable Diffusion pipeline saved to disk, and an app that serves them all."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import make_settings

TINY_MODEL = "tiny-sd"


def espeak(text: str, rate: int = 140) -> bytes:
    """WAV bytes of espeak-ng speaking `text` (the Debian package `espeak-ng`)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: `apt-get install espeak-ng` (make dev does it)")
    return subprocess.run(["espeak-ng", "-s", str(rate), "--stdout", text], check=True, capture_output=True).stdout


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as handle:
        rate = handle.getframerate()
        frames = handle.readframes(handle.getnframes())
    return np.frombuffer(frames, dtype="<i2"), rate


def make_wav(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def reencode(wav: bytes, container: str, codec: str, rate: int | None = None) -> bytes:
    """Re-encode a WAV with PyAV, as a phone app records: m4a/aac, ogg/opus, mp3..."""
    samples, source_rate = wav_samples(wav)
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=rate or source_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :].copy(), format="s16", layout="mono")
        frame.sample_rate = source_rate
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return out.getvalue()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            current = min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
            previous, row[j] = row[j], current
    return row[len(hyp)] / max(1, len(ref))


def _byte_vocab() -> dict[str, int]:
    """A byte-level BPE vocabulary with no merges: every byte is a token (CLIP's special tokens too)."""
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for b in range(256):
            vocab[symbols[b] + suffix] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def build_tiny_pipeline(target: Path) -> Path:
    """A randomly initialised Stable Diffusion pipeline, small enough to run in a second on a CPU,
    saved in the same layout as a real SD 1.5 download."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = _byte_vocab()
    tokenizer_dir = target.parent / f"{target.name}-tokenizer-src"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    (tokenizer_dir / "vocab.json").write_text(json.dumps(vocab), "utf-8")
    (tokenizer_dir / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    tokenizer = CLIPTokenizer(vocab_file=str(tokenizer_dir / "vocab.json"),
                              merges_file=str(tokenizer_dir / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
    ))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D"] * 2,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              steps_offset=1,
                              set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(target))
    # Few steps by default so tests and the Ollama client stay quick; real models default to 25.
    (target / "deskml.json").write_text(json.dumps({"steps": 4}), "utf-8")
    return target


@pytest.fixture(scope="session")
def image_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("image-models")
    build_tiny_pipeline(folder / TINY_MODEL)
    return folder


@pytest.fixture(scope="module")
def media_client(tmp_path_factory: pytest.TempPathFactory, image_models_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("data"), image_models_dir=image_models_dir)
    with TestClient(create_app(settings)) as client:
        yield client
