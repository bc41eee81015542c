"""Disk space: refuse a write that cannot fit, and turn a full disk into a 507 rather than a 500.

Every writer of big files (blob uploads, copies into the store, downloads) checks the room it needs
before it starts when it knows the size, and catches "no space left on device" where it writes, so
the half-written file is deleted at once and the client reads how much is free and how much was needed.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from deskml.core.errors import InsufficientStorage

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# What databases say when they cannot grow a file (SQLite; PostgreSQL and MySQL quote the OS error).
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")


def size_text(num: int) -> str:
    return f"{num / 1e6:,.1f} MB" if num < 10**10 else f"{num / 1e9:,.1f} GB"


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(candidate).free
    return 0


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) means the disk or quota is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        text = str(exc).lower()
        if any(marker in text for marker in _FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def insufficient(where: Path, what: str, needed: int | None = None, reserve: int = 0) -> InsufficientStorage:
    free = free_bytes(where)
    parts = [f"needs {size_text(needed)}" if needed else "could not be written"]
    if reserve:
        parts.append(f"{size_text(reserve)} must stay free (DESKML_DISK_RESERVE_MB)")
    return InsufficientStorage(
        f"not enough disk space for {what}: it {' and '.join(parts)}, but {where} has {size_text(free)} free"
    )


def ensure_room(where: Path, needed: int | None, what: str, reserve: int = 0) -> None:
    """Refuse (507) before writing when `needed` bytes plus the reserve do not fit."""
    if needed and needed + reserve > free_bytes(where):
        raise insufficient(where, what, needed, reserve)


@contextlib.contextmanager
def full_disk_is_507(where: Path, what: str, needed: int | None = None, remove: Path | None = None) -> Iterator[None]:
    """Turn "no space left" raised inside into `InsufficientStorage`, deleting `remove` first.

    The partial file goes before free space is measured, so the message tells what is really free.
    """
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        if remove is not None:
            with contextlib.suppress(OSError):
                remove.unlink(missing_ok=True)
        raise insufficient(where, what, needed) from exc
