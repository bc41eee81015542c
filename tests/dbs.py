"""Databases for the auth and history tests: SQLite in a temp dir, and (in CI) the local PostgreSQL
and MariaDB services, each test in its own schema / database that is dropped afterwards (other
suites share those servers). Also a TCP proxy that can cut a database off and bring it back.

tests/conftest.py registers this module as a plugin, so `database_url` and `db_kind` are fixtures everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
KINDS = ["sqlite", "postgresql", "mariadb"]


def server_url(kind: str) -> str:
    return PG_URL if kind == "postgresql" else MARIADB_URL


def require_service(kind: str) -> None:
    if kind != "sqlite" and not os.environ.get("CI"):
        pytest.skip(f"{kind} tests run in CI (CI=true) against the local {kind} service; set CI=true to run them")


@contextlib.contextmanager
def isolated(kind: str, tmp_path: Path, via: str | None = None) -> Iterator[str]:
    """A database URL for one test. `via` replaces host:port (to go through a proxy)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'deskml.db'}"
        return
    base = server_url(kind)
    name = "deskml_t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {name}" if kind == "postgresql" else f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"CI is set but the {kind} service is not reachable: {exc.orig}")
    url = base.replace("127.0.0.1:5432", via) if via and kind == "postgresql" else base
    url = url.replace("127.0.0.1:3306", via) if via and kind == "mariadb" else url
    if kind == "postgresql":
        url += f"?options=-csearch_path%3D{name}"
    else:
        url = url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.begin() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=KINDS)
def db_kind(request: pytest.FixtureRequest) -> str:
    require_service(request.param)
    return str(request.param)


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    with isolated(db_kind, tmp_path) as url:
        yield url


class TcpProxy:
    """Forwards a local port to a database server; `down()` closes every connection and refuses new
    ones (what clients see when the server dies), `up()` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.writers.difference_update({writer, up_writer})

    async def _up(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self.writers.clear()

    def up(self) -> None:
        self._call(self._up())

    def down(self) -> None:
        self._call(self._down())

    def close(self) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
