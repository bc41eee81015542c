"""Private files: the data dir holds the database with the JWT signing key and the API-key hashes,
so it is created 0700 and the SQLite database (and its -wal/-shm/-journal files) 0600, whatever the
umask. Existing files are never changed behind the operator's back: looser modes get a warning at
start-up (and in `deskml doctor`) with the command that fixes them."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger("deskml.files")

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create `path` and each missing parent 0700; existing directories are left as they are.

    Missing parents are private too: `deskml pull` before the first `serve` creates the data dir as
    the parent of its models folder.
    """
    path = path.expanduser()
    if not path.exists():
        if not path.parent.exists():
            private_dir(path.parent)
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            return path  # another process made it first: its mode is that process's choice
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask only downwards; make it exact
    return path


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (SQLite gives its -wal/-shm files the
    database file's mode, so creating the database this way covers them too)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database).expanduser()


def loose(path: Path) -> int | None:
    """The mode of `path` when group or others may read, write or enter it; None when private or absent."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def loose_files(data_dir: Path, database: Path | None) -> list[tuple[Path, int]]:
    """(path, mode) of each private path whose permissions are looser than it should be."""
    paths: list[Path] = [data_dir.expanduser()]
    if database is not None:
        paths.append(database)
        paths.extend(database.with_name(database.name + suffix) for suffix in SQLITE_SIDE_FILES)
    found = []
    for path in paths:
        mode = loose(path)
        if mode is not None:
            found.append((path, mode))
    return found


def fix_command(found: list[tuple[Path, int]]) -> str:
    dirs = [str(p) for p, _ in found if p.is_dir()]
    files = [str(p) for p, _ in found if not p.is_dir()]
    parts = ([f"chmod 700 {' '.join(dirs)}"] if dirs else []) + ([f"chmod 600 {' '.join(files)}"] if files else [])
    return " && ".join(parts)


def warn_if_loose(data_dir: Path, database: Path | None) -> list[tuple[Path, int]]:
    """Log one warning naming every private path that group or others can reach; returns them."""
    if os.name != "posix":
        return []
    found = loose_files(data_dir, database)
    if found:
        listed = ", ".join(f"{path} ({mode:o})" for path, mode in found)
        log.warning("other users of this machine can read deskml's private files (API-key hashes, the "
                    "login signing key, the request history): %s; fix: %s", listed, fix_command(found))
    return found
