"""Uploaded files: read with the size limit, refuse empty ones, never trust the client's name.

The client's file name is used for nothing but an optional format hint (its extension, lowercased
and checked against an allow-list); files are written, when an engine needs a path, to fresh temp
files that are always removed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import PurePath

from fastapi import UploadFile

from deskml.core.errors import BadRequest, PayloadTooLarge


async def read_upload(file: UploadFile | None, field: str, limit_bytes: int) -> bytes:
    if file is None:
        raise BadRequest(f"multipart field '{field}' is required", param=field)
    data = await file.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise PayloadTooLarge(f"'{field}' is larger than the {limit_bytes / (1 << 20):g} MB limit")
    if not data:
        raise BadRequest(f"'{field}' is empty", param=field)
    return data


def extension_hint(filename: str | None, allowed: set[str]) -> str | None:
    """A lowercase extension from the client's file name if it is one we know, else None."""
    if not filename:
        return None
    suffix = PurePath(filename.replace("\\", "/")).suffix.lower().lstrip(".")
    return suffix if suffix in allowed else None


@contextlib.contextmanager
def temp_file(data: bytes, suffix: str = "") -> Iterator[str]:
    """Write `data` to a private temp file for engines that want a path; removed on exit, always."""
    safe_suffix = suffix if suffix.isalnum() else ""
    fd, path = tempfile.mkstemp(prefix="deskml-upload-", suffix=f".{safe_suffix}" if safe_suffix else "")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
