"""The database behind keys, users, server secrets and request history.

SQLAlchemy 2 with synchronous drivers (sqlite3, psycopg 3, PyMySQL): the server calls it from
worker threads, never on the event loop. The schema is owned by the Alembic migrations shipped in
`deskml/migrations`, applied at start-up and by `deskml db upgrade`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from deskml.services.fileperms import private_dir, private_file, sqlite_path
from deskml.settings import Settings

log = logging.getLogger("deskml.db")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# MySQL's TEXT holds 64 KB; prompts and replies can be longer.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timestamps stored as naive UTC and read back as aware UTC, the same on all three databases."""

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        # MySQL's DATETIME drops fractions of a second unless asked for them.
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)  # public part of the key
    name: Mapped[str] = mapped_column(sa.String(200), index=True)
    secret_hash: Mapped[str] = mapped_column(sa.String(64))  # sha256 hex of the secret part
    scopes: Mapped[str] = mapped_column(sa.String(200))  # space-separated
    limits: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    scopes: Mapped[str] = mapped_column(sa.String(200))
    limits: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ServerSecret(Base):
    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class HistoryRow(Base):
    __tablename__ = "request_history"
    # (created_at, id): the newest-first order of GET /api/history and its keyset cursor.
    __table_args__ = (sa.Index("ix_request_history_created_at_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    dialect: Mapped[str] = mapped_column(sa.String(16))
    method: Mapped[str] = mapped_column(sa.String(10))
    path: Mapped[str] = mapped_column(sa.String(512))
    status: Mapped[int] = mapped_column(sa.Integer, index=True)
    model: Mapped[str | None] = mapped_column(sa.String(255), index=True, nullable=True)
    backend: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    node: Mapped[str | None] = mapped_column(sa.String(64), index=True, nullable=True)  # DESKML_NODE_NAME
    principal_id: Mapped[str | None] = mapped_column(sa.String(200), index=True, nullable=True)
    principal_kind: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    client: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    cache: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    duration_ns: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    queue_ns: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    load_ns: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    prompt_eval_ns: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    eval_ns: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    ttft_ns: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(sa.Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str | None] = mapped_column(LongText, nullable=True)
    input: Mapped[str | None] = mapped_column(LongText, nullable=True)  # JSON text
    output: Mapped[str | None] = mapped_column(LongText, nullable=True)  # JSON text
    extra: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.data_dir / 'deskml.db'}"


def redacted(url: str) -> str:
    """The URL with any password hidden, for logs and error messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid database URL>"


class DatabaseError(RuntimeError):
    """The database could not be reached or migrated at start-up (message is safe to print)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI read and the server write at once; busy_timeout waits for a lock rather
    # than failing at the first contended write.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise DatabaseError(f"DESKML_DATABASE_URL is not a database URL: {exc}") from exc
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "future": True}
        if self.dialect == "sqlite":
            file = sqlite_path(url)
            if file is not None:
                # It holds key hashes and the JWT signing key: private before SQLite first opens it.
                private_dir(file.parent)
                private_file(file)
            kwargs.pop("pool_pre_ping")
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 5}
        else:
            # Fail fast when the server is down instead of hanging a worker thread.
            kwargs["pool_recycle"] = 1800
            kwargs["connect_args"] = {"connect_timeout": 5}
        try:
            self.engine: Engine = sa.create_engine(url, **kwargs)
        except ModuleNotFoundError as exc:
            extra = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}.get(self.dialect)
            hint = f": pip install 'deskml[{extra}]'" if extra else ""
            raise DatabaseError(f"no driver for {redacted(url)} ({exc.name} is not installed){hint}") from exc
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(database_url(settings))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision`, holding a database-wide lock so that two servers
        starting together do not both create the tables."""
        # Alembic narrates each step at INFO, and its plugins announce themselves when it is first
        # imported (hence before the import): deskml says once what changed, and nothing when nothing did.
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("alembic").setLevel(logging.WARNING)
        from alembic import command
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.begin() as conn, _migration_lock(conn):
                before = MigrationContext.configure(conn).get_current_revision()
                command.upgrade(alembic_config(conn), revision)
                after = MigrationContext.configure(conn).get_current_revision()
        except sa.exc.OperationalError as exc:
            raise DatabaseError(f"cannot reach the database {redacted(self.url)}: {exc.orig}") from exc
        if after != before:
            if before is None:
                log.info("database %s: created the schema (revision %s)", redacted(self.url), after)
            else:
                log.info("database %s: schema migrated from revision %s to %s", redacted(self.url), before, after)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    name = conn.dialect.name
    if name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(726316)"))  # released at commit
        yield
    elif name in {"mysql", "mariadb"}:
        conn.execute(sa.text("SELECT GET_LOCK('deskml_migrate', 60)"))
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT RELEASE_LOCK('deskml_migrate')"))
    else:
        yield
