"""Datasets and batch files, parsed and checked before anything is queued.

Text datasets are CSV (a header row with `text` and `label`) or JSONL (`{"text":..., "label":...}`
per line). Image datasets are a zip of `label/picture.jpg` folders (optionally all under one top
folder). Zips are never extracted to disk: members are read into memory one by one with the
declared and the actual sizes both bounded (a zip bomb lies in its headers), and member names are
only used to find the label, after refusing absolute paths and `..` parts.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from deskml.core.errors import BadRequest, NotImplementedFeature, PayloadTooLarge
from deskml.core.extras import install_command

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
MAX_BATCH_LINES = 50_000  # OpenAI's limit per batch file
MAX_LABEL_CHARS = 200


@dataclass
class TextDataset:
    texts: list[str]
    labels: list[str]
    format: str

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def summary(self) -> dict[str, Any]:
        counts = Counter(self.labels)
        return {"rows": len(self.texts), "classes": self.classes, "per_class": dict(sorted(counts.items())),
                "format": self.format}


@dataclass
class ImageDataset:
    # (label, member name) per picture; the bytes are read again when training, one at a time
    items: list[tuple[str, str]] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return sorted({label for label, _ in self.items})

    def summary(self) -> dict[str, Any]:
        counts = Counter(label for label, _ in self.items)
        return {"images": len(self.items), "classes": self.classes, "per_class": dict(sorted(counts.items())),
                "format": "zip"}


def _decode(data: bytes) -> str:
    if not data.strip():
        raise BadRequest("the dataset is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the dataset is not UTF-8 text (byte {exc.start} is invalid)") from None


def looks_like_jsonl(text: str) -> bool:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first.startswith("{")


def _check_classes(labels: list[str], what: str = "examples") -> None:
    counts = Counter(labels)
    if len(counts) < 2:
        found = f"only '{next(iter(counts))}'" if counts else "none"
        raise BadRequest(f"a classifier needs at least 2 classes; the dataset has {found}")
    few = sorted(label for label, n in counts.items() if n < 2)
    if few:
        raise BadRequest(f"every class needs at least 2 {what} (one to train on, one to test); "
                         f"too few for: {', '.join(few[:10])}")


def _clean_label(value: Any, where: str) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise BadRequest(f"{where}: 'label' must be a string or a number")
    label = str(value).strip()
    if not label:
        raise BadRequest(f"{where}: 'label' is empty")
    if len(label) > MAX_LABEL_CHARS:
        raise BadRequest(f"{where}: 'label' is longer than {MAX_LABEL_CHARS} characters")
    return label


def _jsonl_objects(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, or a BadRequest naming the line that is not one."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"line {number} is not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(item, dict):
            raise BadRequest(f"line {number} is not a JSON object")
        yield number, item


def parse_text_dataset(data: bytes) -> TextDataset:
    """The rows of a CSV or JSONL dataset with `text` and `label`, or a BadRequest saying what is wrong."""
    text = _decode(data)
    texts: list[str] = []
    labels: list[str] = []
    if looks_like_jsonl(text):
        fmt = "jsonl"
        for number, item in _jsonl_objects(text):
            missing = [name for name in ("text", "label") if name not in item]
            if missing:
                raise BadRequest(f"line {number} lacks {' and '.join(repr(m) for m in missing)}")
            if not isinstance(item["text"], str) or not item["text"].strip():
                raise BadRequest(f"line {number}: 'text' must be a non-empty string")
            texts.append(item["text"])
            labels.append(_clean_label(item["label"], f"line {number}"))
    else:
        fmt = "csv"
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(io.StringIO(text), dialect=dialect)
        columns = {(name or "").strip().lower(): name for name in (reader.fieldnames or [])}
        missing = [name for name in ("text", "label") if name not in columns]
        if missing:
            found = ", ".join(repr(c) for c in columns if c) or "none"
            raise BadRequest(f"the CSV lacks the column(s) {', '.join(missing)} (its header has {found})")
        try:
            for number, row in enumerate(reader, start=2):
                value = (row.get(columns["text"]) or "").strip()
                if not value and not (row.get(columns["label"]) or "").strip():
                    continue  # a blank line
                if not value:
                    raise BadRequest(f"row {number}: 'text' is empty")
                texts.append(value)
                labels.append(_clean_label(row.get(columns["label"]), f"row {number}"))
        except csv.Error as exc:
            raise BadRequest(f"the CSV could not be read: {exc}") from None
    if not texts:
        raise BadRequest("the dataset has no rows")
    _check_classes(labels)
    return TextDataset(texts=texts, labels=labels, format=fmt)


# zips ------------------------------------------------------------------------------------------
def _open_zip(data: bytes) -> zipfile.ZipFile:
    if not data:
        raise BadRequest("the dataset is empty")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadRequest(f"the dataset is not a zip archive: {exc}") from None


def _safe_parts(name: str) -> tuple[str, ...]:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BadRequest(f"unsafe path in the zip: {name[:200]!r}")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in {"", "."})
    if any(p == ".." for p in parts):
        raise BadRequest(f"unsafe path in the zip: {name[:200]!r}")
    return parts


def _image_members(archive: zipfile.ZipFile, max_files: int, max_bytes: int) -> list[tuple[str, zipfile.ZipInfo]]:
    infos = archive.infolist()
    if len(infos) > max_files:
        raise PayloadTooLarge(f"the zip holds {len(infos)} entries, more than the {max_files} allowed")
    declared = sum(info.file_size for info in infos)
    if declared > max_bytes:
        raise PayloadTooLarge(f"the zip unpacks to {declared / (1 << 20):.0f} MB, more than the "
                              f"{max_bytes / (1 << 20):.0f} MB allowed")
    entries: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
    for info in infos:
        parts = _safe_parts(info.filename)
        if info.is_dir() or not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        entries.append((parts, info))
    if not entries:
        raise BadRequest("the zip holds no pictures: expected label/picture.jpg folders")
    # `dataset/cat/1.jpg` (one top folder around the label folders) is as good as `cat/1.jpg`.
    tops = {parts[0] for parts, _ in entries}
    strip = 1 if len(tops) == 1 and all(len(parts) == 3 for parts, _ in entries) else 0
    members: list[tuple[str, zipfile.ZipInfo]] = []
    for parts, info in entries:
        rest = parts[strip:]
        if len(rest) != 2:
            raise BadRequest(f"{'/'.join(parts)[:200]!r} is not in a label folder: expected label/picture.jpg")
        members.append((_clean_label(rest[0], f"folder {rest[0][:50]!r}"), info))
    return members


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]) -> bytes:
    """A member's bytes, reading at most what the remaining unpack budget allows (`budget[0]`)."""
    try:
        with archive.open(info) as handle:
            data = handle.read(budget[0] + 1)
    # zipfile raises NotImplementedError for compression methods it cannot read (e.g. a zip made
    # with deflate64): the upload's fault, so a 400 like any other unreadable member
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise BadRequest(f"{info.filename[:200]!r} in the zip is corrupt: {exc}") from None
    if len(data) > budget[0]:
        raise PayloadTooLarge("the zip unpacks to more than the allowed size (its headers understate it)")
    budget[0] -= len(data)
    return data


def parse_image_dataset(data: bytes, max_files: int, max_bytes: int, *, verify: bool = True) -> ImageDataset:
    """Check a zip of label folders: safe names, bounded size, 2+ classes of 2+ decodable pictures."""
    archive = _open_zip(data)
    with archive:
        members = _image_members(archive, max_files, max_bytes)
        _check_classes([label for label, _ in members], "pictures")
        if verify:
            try:
                from PIL import Image, UnidentifiedImageError
            except ImportError:  # an install without the vision extra: say which, not a 500
                raise NotImplementedFeature(
                    f"image datasets (a zip of label folders) need the vision extra: {install_command('vision')}"
                ) from None

            budget = [max_bytes]
            for _, info in members:
                try:
                    with Image.open(io.BytesIO(read_member(archive, info, budget))) as image:
                        image.verify()
                except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                    raise BadRequest(f"{info.filename[:200]!r} is not a readable picture: {exc}") from None
        return ImageDataset(items=[(label, info.filename) for label, info in members])


def iter_images(data: bytes, max_files: int, max_bytes: int) -> Iterator[tuple[str, str, bytes]]:
    """(label, member name, picture bytes) for every picture of a checked zip, within the same limits."""
    archive = _open_zip(data)
    with archive:
        budget = [max_bytes]
        for label, info in _image_members(archive, max_files, max_bytes):
            yield label, info.filename, read_member(archive, info, budget)


# batch input files ------------------------------------------------------------------------------
@dataclass
class BatchLine:
    custom_id: str
    url: str
    body: dict[str, Any]


def parse_batch_file(data: bytes) -> list[BatchLine]:
    """OpenAI batch input: one `{custom_id, method, url, body}` request per line."""
    text = _decode(data)
    lines: list[BatchLine] = []
    seen: set[str] = set()
    for number, item in _jsonl_objects(text):
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise BadRequest(f"line {number}: 'custom_id' must be a non-empty string")
        if custom_id in seen:
            raise BadRequest(f"line {number}: custom_id {custom_id!r} is used twice (each must be unique)")
        seen.add(custom_id)
        if str(item.get("method", "")).upper() != "POST":
            raise BadRequest(f"line {number}: 'method' must be POST")
        url = item.get("url")
        if url not in BATCH_ENDPOINTS:
            raise BadRequest(f"line {number}: 'url' must be one of {', '.join(BATCH_ENDPOINTS)}, not {url!r}")
        body = item.get("body")
        if not isinstance(body, dict):
            raise BadRequest(f"line {number}: 'body' must be a JSON object")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise BadRequest(f"line {number}: body.model is required")
        lines.append(BatchLine(custom_id=custom_id, url=str(url), body=body))
        if len(lines) > MAX_BATCH_LINES:
            raise BadRequest(f"a batch file may hold at most {MAX_BATCH_LINES} requests")
    if not lines:
        raise BadRequest("the batch file has no requests")
    return lines
