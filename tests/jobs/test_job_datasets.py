"""Dataset and batch-file checks that run before anything is queued: what is refused, and why."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from deskml.core.errors import BadRequest, PayloadTooLarge
from deskml.runtime.jobs.datasets import iter_images, parse_batch_file, parse_image_dataset, parse_text_dataset
from tests.jobs.jobdata import batch_jsonl, intents_csv, intents_jsonl, patterns_zip

MB = 1 << 20


def test_csv_and_jsonl_datasets_parse_to_the_same_rows() -> None:
    csv_set = parse_text_dataset(intents_csv(10))
    jsonl_set = parse_text_dataset(intents_jsonl(10))
    assert (csv_set.format, jsonl_set.format) == ("csv", "jsonl")
    assert csv_set.texts == jsonl_set.texts and csv_set.labels == jsonl_set.labels
    assert csv_set.summary()["per_class"] == {"billing": 10, "greeting": 10, "weather": 10}


def test_csv_header_is_case_insensitive_and_semicolons_work() -> None:
    data = "Label;Text\nspam;win a prize now\nham;see you at lunch\nspam;free money\nham;call me later\n"
    dataset = parse_text_dataset(data.encode())
    assert dataset.labels == ["spam", "ham", "spam", "ham"]
    assert dataset.texts[0] == "win a prize now"


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"text,category\nhello,a\nbye,b\n", "lacks the column(s) label"),
    (b"sentence,label\nhello,a\nbye,b\n", "lacks the column(s) text"),
    (b"text,label\nhello,a\nhi,a\nhey,a\n", "at least 2 classes; the dataset has only 'a'"),
    (b"text,label\nhello,a\nhi,a\nbye,b\n", "at least 2 examples"),
    (b"text,label\n", "no rows"),
    (b'{"text": "hi", "label": "a"}\n{"text": "yo", "label": "b"\n', "line 2 is not valid JSON"),
    (b'{"text": "hi", "label": "a"}\n{"text": "yo"}\n', "line 2 lacks 'label'"),
    (b'{"text": "hi", "label": "a"}\n[1, 2]\n', "line 2 is not a JSON object"),
    (b'{"text": "", "label": "a"}\n', "line 1: 'text' must be a non-empty string"),
    (b'{"text": "x", "label": null}\n', "line 1: 'label' must be a string or a number"),
    (b"\xff\xfetext,label\n", "not UTF-8"),
])
def test_malformed_text_datasets_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_text_dataset(data)
    assert message in info.value.message


def test_image_zip_with_or_without_a_top_folder() -> None:
    for top in ("patterns", None):
        dataset = parse_image_dataset(patterns_zip(4, top=top), 100, 50 * MB)
        assert dataset.classes == ["checks", "circles", "stripes"]
        assert len(dataset.items) == 12
    pictures = list(iter_images(patterns_zip(2), 100, 50 * MB))
    assert [label for label, _, _ in pictures] == ["circles", "circles", "stripes", "stripes", "checks", "checks"]
    assert pictures[0][1] == "patterns/circles/000.jpg"
    assert all(data[:2] == b"\xff\xd8" for _, _, data in pictures)  # JPEG bytes, read in memory


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def _jpeg() -> bytes:
    return next(iter_images(patterns_zip(2), 100, 50 * MB))[2]


@pytest.mark.parametrize("name", ["../evil/x.jpg", "/abs/cat/x.jpg", "a\\..\\b.jpg", "cat/../../x.jpg", "C:/x/y.jpg"])
def test_zip_with_an_unsafe_path_is_refused(name: str) -> None:
    data = _zip({"cat/a.jpg": _jpeg(), "cat/b.jpg": _jpeg(), "dog/a.jpg": _jpeg(), name: _jpeg()})
    with pytest.raises(BadRequest, match="unsafe path"):
        parse_image_dataset(data, 100, 50 * MB)


def test_zip_bomb_is_refused_by_its_declared_size_and_by_what_it_really_unpacks_to() -> None:
    bomb = _zip({"cat/a.jpg": _jpeg(), "dog/b.jpg": b"\0" * (30 * MB)})
    assert len(bomb) < MB  # 30 MB of zeros deflate to a few KB
    with pytest.raises(PayloadTooLarge, match="unpacks to"):
        parse_image_dataset(bomb, 100, 10 * MB)
    # A bomb whose header understates its size: the bounded read catches it all the same.
    lying = bytearray(bomb)
    real = (30 * MB).to_bytes(4, "little")
    fake = (1000).to_bytes(4, "little")
    assert lying.count(real) == 2  # the size in the local header and in the central directory
    lying = lying.replace(real, fake)
    with pytest.raises((PayloadTooLarge, BadRequest)):
        list(iter_images(bytes(lying), 100, 10 * MB))


def test_zip_limits_on_entry_count_classes_and_content() -> None:
    many = _zip({f"c{i % 2}/{i}.jpg": b"x" for i in range(50)}, zipfile.ZIP_STORED)
    with pytest.raises(PayloadTooLarge, match="50 entries"):
        parse_image_dataset(many, 10, 50 * MB)
    with pytest.raises(BadRequest, match="not a zip"):
        parse_image_dataset(b"PK\x03\x04 but not really a zip", 10, MB)
    with pytest.raises(BadRequest, match="at least 2 classes"):
        parse_image_dataset(_zip({"cat/a.jpg": _jpeg(), "cat/b.jpg": _jpeg()}), 10, MB)
    with pytest.raises(BadRequest, match="no pictures"):
        parse_image_dataset(_zip({"readme.txt": b"hello"}), 10, MB)
    with pytest.raises(BadRequest, match="not a readable picture"):
        parse_image_dataset(_zip({"cat/a.jpg": _jpeg(), "cat/b.jpg": b"not a jpeg", "dog/a.jpg": _jpeg(),
                                  "dog/b.jpg": _jpeg()}), 10, MB)
    with pytest.raises(BadRequest, match="not in a label folder"):
        parse_image_dataset(_zip({"a.jpg": _jpeg(), "cat/b.jpg": _jpeg()}), 10, MB)


def test_batch_file_lines_are_checked() -> None:
    lines = parse_batch_file(batch_jsonl(5))
    assert [line.custom_id for line in lines] == [f"req-{i}" for i in range(5)]
    good = json.loads(batch_jsonl(1).decode())
    other = {**good, "custom_id": "other"}
    cases = {
        "custom_id": ({**good, "custom_id": ""}, "custom_id"),
        "method": ({**other, "method": "GET"}, "'method' must be POST"),
        "url": ({**other, "url": "/v1/completions"}, "'url' must be one of"),
        "body": ({**other, "body": "x"}, "'body' must be a JSON object"),
        "model": ({**other, "body": {"messages": []}}, "body.model is required"),
    }
    for bad, message in cases.values():
        with pytest.raises(BadRequest, match=message):
            parse_batch_file((json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode())
    with pytest.raises(BadRequest, match="used twice"):
        parse_batch_file((json.dumps(good) + "\n" + json.dumps(good)).encode())
    with pytest.raises(BadRequest, match="line 2 is not valid JSON"):
        parse_batch_file((json.dumps(good) + "\n{oops\n").encode())
    with pytest.raises(BadRequest, match="empty"):
        parse_batch_file(b"")
