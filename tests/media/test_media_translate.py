"""Pure functions of the speech and image layers: wire formats, chunking, text preparation."""

from __future__ import annotations

import numpy as np
import pytest

from deskml.api.openai import media_schemas as wire
from deskml.api.openai import media_translate as tr
from deskml.core import media as m
from deskml.core.errors import BadRequest
from deskml.core.languages import language_code, language_name
from deskml.engines.piper import utterances
from deskml.engines.whisper import chunked, quiet_cut


def _transcript() -> m.Transcript:
    return m.Transcript(model="whisper:tiny.en", text="Hello there. General Kenobi.", language="en", duration=4.2,
                        segments=[
                            m.Segment(id=0, start=0.0, end=1.5, text=" Hello there.",
                                      words=[m.Word(word=" Hello", start=0.0, end=0.6),
                                             m.Word(word=" there.", start=0.6, end=1.5)]),
                            m.Segment(id=1, start=3661.25, end=3662.0, text=" General Kenobi."),
                        ])


def test_srt_and_vtt_timestamps() -> None:
    t = _transcript()
    assert tr.srt(t.segments) == ("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
                                  "2\n01:01:01,250 --> 01:01:02,000\nGeneral Kenobi.\n")
    assert tr.vtt(t.segments).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n")


def test_verbose_json_follows_granularities() -> None:
    t = _transcript()
    both = tr.verbose(t, ["word", "segment"])
    assert both.language == "english" and both.segments and both.words
    assert [w.word for w in both.words] == ["Hello", "there."]
    words_only = tr.verbose(t, ["word"])
    assert words_only.segments is None and words_only.words
    default = tr.verbose(t, [])
    assert default.segments and default.words is None


@pytest.mark.parametrize(("fmt", "media_type"), [("text", "text/plain"), ("srt", "text/plain"),
                                                 ("vtt", "text/vtt"), ("json", "application/json")])
def test_transcription_body_media_types(fmt: str, media_type: str) -> None:
    body, kind = tr.transcription_body(_transcript(), wire.TranscriptionForm(response_format=fmt))  # type: ignore[arg-type]
    assert kind.startswith(media_type)
    if fmt == "json":
        assert body == {"text": "Hello there. General Kenobi."}


def test_openai_model_names_mean_the_default() -> None:
    assert tr.model_name("whisper-1", "asr") is None
    assert tr.model_name("tts-1-hd", "tts") is None
    assert tr.model_name("dall-e-3", "image") is None
    assert tr.model_name("whisper:base", "asr") == "whisper:base"
    assert tr.model_name("", "asr") is None


def test_openai_voices_map_to_the_models_voice() -> None:
    req = tr.speak_request(wire.SpeechRequest(input="hi", voice="alloy", response_format="opus", speed=1.5))
    assert req.voice is None and req.format == "opus" and req.speed == 1.5
    assert tr.speak_request(wire.SpeechRequest(input="hi", voice="joe")).voice == "joe"
    with pytest.raises(BadRequest):
        tr.speak_request(wire.SpeechRequest(input="hi", stream_format="sse"))


def test_image_size_parsing() -> None:
    assert tr.image_size("512x768") == (512, 768)
    assert tr.image_size("auto") == (None, None)
    assert tr.image_size(None) == (None, None)
    for bad in ("512", "axb", "512x", "-5x5"):
        with pytest.raises(BadRequest):
            tr.image_size(bad)


def test_images_response_b64_and_data_url() -> None:
    done = m.ImageDone(model="tiny", images=[b"\x89PNG"], seeds=[1], width=64, height=64, steps=2)
    assert tr.images_response(done, None).data[0].b64_json == "iVBORw=="
    assert tr.images_response(done, "url").data[0].url == "data:image/png;base64,iVBORw=="


def test_language_codes() -> None:
    assert language_code("English") == "en"
    assert language_code("ru") == "ru"
    assert language_code("en-US") == "en"
    assert language_code(" ") is None
    assert language_name("uk") == "ukrainian"


def test_piper_utterances_never_break_lines_inside_a_paragraph() -> None:
    text = "First line\nstill first.\r\n\r\nSecond paragraph\u2028with a separator.\n\n...\n\n"
    assert utterances(text) == ["First line still first.", "Second paragraph with a separator."]
    assert utterances("?!") == []


def test_quiet_cut_finds_the_silence() -> None:
    rate = 16000
    audio = np.ones(rate * 10, dtype=np.float32)
    audio[int(rate * 7.2):int(rate * 7.5)] = 0.0
    cut = quiet_cut(audio, rate * 10, rate * 5)
    assert int(rate * 7.2) <= cut < int(rate * 7.5)


def test_chunked_keeps_every_sample_in_order() -> None:
    rate = 16000
    signal = np.arange(rate * 25, dtype=np.float32)
    blocks = np.array_split(signal, 97)
    pieces = list(chunked(blocks, rate * 10, rate * 2))
    assert [offset for offset, _ in pieces] == [sum(p.size for _, p in pieces[:i]) for i in range(len(pieces))]
    assert np.array_equal(np.concatenate([p for _, p in pieces]), signal)
    assert all(p.size <= rate * 10 for _, p in pieces)
