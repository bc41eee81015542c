"""Request history: every finished request written to the database, off the request path.

The request-record pipeline hands each finished `RequestRecord` to `HistoryWriter.submit`, which
only appends to a bounded in-memory buffer (DESKML_HISTORY_BUFFER records). A background task writes
the buffer in batches from a worker thread. While the database is unreachable, batches go back to the
buffer and are retried with backoff; once the buffer is full the oldest records are dropped and
counted in `dropped` (exported as `deskml_history_dropped_total`). Inference never waits on the
database.

Nothing a client sends may stop the writer: text is made storable (lone surrogates replaced) before
it is bound, a batch the database refuses for any reason is retried row by row and the rows still
refused are dropped and counted, and the loop itself survives any exception (logged, counted in
`write_errors`, exported as `deskml_history_write_errors_total`, shown by /health and doctor).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from deskml.core.aio import wait_event
from deskml.core.context import RequestRecord
from deskml.core.durations import parse_duration
from deskml.core.errors import BadRequest
from deskml.core.text import storable, storable_value
from deskml.core.trace import unrecorded
from deskml.services.db import Database, HistoryRow
from deskml.settings import Settings

log = logging.getLogger("deskml.history")

BATCH_SIZE = 500
CONTENT_LIMIT = 1_000_000  # characters of input or output kept per request
PRUNE_EVERY_S = 3600.0
ERROR_WINDOW_S = 60.0
# Errors that mean "the database is not there right now", as opposed to a row it refuses.
_OUTAGE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)


@dataclass(slots=True)
class _Pending:
    record: RequestRecord
    started_at: float  # Unix time the request began
    duration_ns: int


def _clip(value: Any, size: int) -> str | None:
    return None if value is None else storable(str(value)[:size])


def _content(value: Any) -> str | None:
    if value is None:
        return None
    text = storable(json.dumps(value, ensure_ascii=False, default=str))
    if len(text) > CONTENT_LIMIT:
        text = json.dumps(text[:CONTENT_LIMIT] + "…[truncated]", ensure_ascii=False)
    return text


def to_row(item: _Pending, keep_content: bool) -> dict[str, Any]:
    record = item.record
    extra = {k: v for k, v in record.extra.items() if k != "principal_kind"} or None
    if extra is not None:
        # JSON columns escape a lone surrogate as "\ud800", which PostgreSQL's jsonb refuses.
        extra = storable_value(json.loads(json.dumps(extra, default=str)))
    return {
        "request_id": storable(record.request_id[:64]),
        "created_at": datetime.fromtimestamp(item.started_at, UTC),
        "dialect": _clip(record.dialect or "", 16),
        "method": _clip(record.method or "", 10),
        "path": _clip(record.path or "", 512),
        "status": int(record.status),
        "model": _clip(record.model, 255),
        "backend": _clip(record.backend, 64),
        "node": None,  # the writer's: every row a server writes is its own node's
        "principal_id": _clip(record.principal_id, 200),
        "principal_kind": _clip(record.extra.get("principal_kind"), 16),
        "client": _clip(record.client, 128),
        "cache": _clip(record.cache, 16),
        "duration_ns": item.duration_ns,
        "queue_ns": record.queue_ns,
        "load_ns": record.load_ns,
        "prompt_eval_ns": record.prompt_eval_ns,
        "eval_ns": record.eval_ns,
        "ttft_ns": record.ttft_ns,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "error": _clip(record.error, CONTENT_LIMIT),
        "input": _content(record.input) if keep_content else None,
        "output": _content(record.output) if keep_content else None,
        "extra": extra,
    }


class HistoryWriter:
    def __init__(self, db: Database, settings: Settings, node: str | None = None) -> None:
        self.db = db
        self.node = node  # this server's node id (DESKML_NODE_NAME), written on each of its rows
        self.keep_content = settings.history_content
        self.capacity = max(1, settings.history_buffer)
        self.flush_seconds = max(0.05, settings.history_flush_seconds)
        self.retention_days = settings.history_days
        self.buffer: deque[_Pending] = deque()
        # Counters read by metrics, /health and doctor.
        self.dropped = 0  # records never written: the buffer was full, or the database refused the row
        self.written = 0
        self.write_errors = 0  # write attempts that raised, whatever the reason
        self.healthy = True  # False from a failed write until the next one that succeeds
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # Unix time
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._reachable = True  # the last batch reached the database (to log each change once)
        # /health says "not ok" this long after any failed write, so a scrape every few seconds sees it.
        self.error_window = ERROR_WINDOW_S

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self.buffer)

    @property
    def task_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any]:
        """What /health and doctor say about the writer."""
        recent = self.last_error_at is not None and time.time() - self.last_error_at < self.error_window
        return {
            "ok": self.healthy and self.task_alive and not recent, "running": self.task_alive, "pending": self.pending,
            "written": self.written, "dropped": self.dropped, "write_errors": self.write_errors,
            "last_error": self.last_error,
            "last_error_at": datetime.fromtimestamp(self.last_error_at, UTC).isoformat(timespec="seconds")
            if self.last_error_at is not None else None,
        }

    # the record sink: O(1), never blocks, never raises
    def submit(self, record: RequestRecord) -> None:
        if record.path.startswith("/ui/") and record.status < 400:
            return  # the web UI's static files are not API requests
        if unrecorded(record):
            return  # a router's health check (deskml/core/trace.py says which, and why that is safe)
        elapsed = record.elapsed_ns
        self._push(_Pending(record, time.time() - elapsed / 1e9, elapsed))
        if len(self.buffer) >= BATCH_SIZE and self._wake is not None:
            self._wake.set()

    __call__ = submit

    def _push(self, item: _Pending) -> None:
        if len(self.buffer) >= self.capacity:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(item)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.write_errors += 1
        self.healthy = False
        self.last_error = f"{what}: {type(exc).__name__}: {_short(exc)}"
        self.last_error_at = time.time()

    # background loop
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="deskml-history")

    async def close(self, timeout: float = 10.0) -> None:
        """Stop the loop and write what is buffered, for at most `timeout` seconds; never raises, so
        a broken database cannot fail the server's shutdown."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # the loop is built not to die; if it did, say so and still flush
                log.exception("history: the writer had stopped")
            self._task = None
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except TimeoutError:
            log.warning("history: shutdown flush took longer than %.0fs", timeout)
        except Exception as exc:
            self._failed("shutdown flush", exc)
            log.warning("history: shutdown flush failed: %s", self.last_error)
        if self.buffer:
            log.warning("history: %d records not written at shutdown", len(self.buffer))

    async def _drain(self) -> None:
        while self.buffer:
            if not await self.flush():
                return

    async def _run(self) -> None:
        assert self._wake is not None
        delay = self.flush_seconds
        while True:
            await wait_event(self._wake, delay)
            self._wake.clear()
            ok = True
            try:
                while self.buffer and ok:
                    ok = await self.flush()
            except Exception as exc:  # a bug here must not end the history for the life of the process
                ok = False
                self._failed("writer", exc)
                log.exception("history: write loop error; carrying on")
            # Back off while the database is down; one attempt per few seconds costs nothing.
            delay = self.flush_seconds if ok else min(max(5.0, self.flush_seconds), delay * 2)
            if ok and self.retention_days > 0 and time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                self._last_prune = time.monotonic()
                try:
                    await asyncio.to_thread(self.prune)
                except Exception as exc:
                    log.warning("history: pruning failed: %s", _short(exc))

    async def flush(self) -> bool:
        """Write one batch; False when the database could not be reached (the unwritten part is kept)."""
        batch = [self.buffer.popleft() for _ in range(min(BATCH_SIZE, len(self.buffer)))]
        if not batch:
            return True
        try:
            written, refused, unwritten, outage = await asyncio.to_thread(self._write, batch)
        except Exception as exc:  # _write catches everything; should a bug get out, keep the records
            log.exception("history: writer error; the batch is kept for the next try")
            written, refused, unwritten, outage = 0, 0, batch, exc
        self.written += written
        self.dropped += refused
        if outage is not None:
            self._failed("database unreachable" if isinstance(outage, _OUTAGE) else "writer", outage)
            if self._reachable and isinstance(outage, _OUTAGE):
                log.warning("history: database unreachable, buffering requests (%s)", _short(outage))
            self._reachable = False
            # Put the unwritten records back in front; whatever no longer fits is the oldest and is dropped.
            room = self.capacity - len(self.buffer)
            keep = unwritten[-room:] if room > 0 else []
            self.dropped += len(unwritten) - len(keep)
            self.buffer.extendleft(reversed(keep))
            return False
        if not self._reachable:
            log.warning("history: database reachable again, writing resumed")
        self._reachable = True
        self.healthy = refused == 0
        return True

    def _write(self, batch: list[_Pending]) -> tuple[int, int, list[_Pending], BaseException | None]:
        """Runs in a worker thread and never raises: (written, refused, unwritten, outage). Only an
        outage leaves records unwritten; any other failure costs the rows it concerns, not the batch."""
        try:
            rows = [self._row(item) for item in batch]
            with self.db.session() as session:
                session.execute(sa.insert(HistoryRow), rows)
            return len(rows), 0, [], None
        except _OUTAGE as exc:
            return 0, 0, batch, exc
        except Exception as exc:
            # One bad row must not block the others: write them one by one, drop the refused.
            self._failed("batch refused", exc)
            log.warning("history: batch refused (%s); writing rows one by one", _short(exc))
        written = refused = 0
        for index, item in enumerate(batch):
            try:
                row = self._row(item)
                with self.db.session() as session:
                    session.execute(sa.insert(HistoryRow), [row])
                written += 1
            except _OUTAGE as exc:
                return written, refused, batch[index:], exc
            except Exception as exc:
                refused += 1
                self._failed("record refused", exc)
                log.warning("history: dropped record %s: %s", item.record.request_id[:64], self.last_error)
        return written, refused, [], None

    def _row(self, item: _Pending) -> dict[str, Any]:
        return {**to_row(item, self.keep_content), "node": _clip(self.node, 64)}

    def prune(self) -> int:
        return prune(self.db, self.retention_days)


def prune(db: Database, days: int) -> int:
    """Delete history older than `days` (0 keeps everything); returns the rows deleted."""
    if days <= 0:
        return 0
    cutoff = datetime.now(UTC) - timedelta(days=days)
    with db.session() as session:
        result = session.execute(sa.delete(HistoryRow).where(HistoryRow.created_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _short(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]


# reading ----------------------------------------------------------------------------------------
@dataclass
class HistoryQuery:
    model: str | None = None
    user: str | None = None  # principal id: a key id or a user name
    status: str | None = None  # "200", "4xx", "error" (>= 400 or an error noted) or "ok" (the others)
    dialect: str | None = None
    method: str | None = None  # GET, POST, ...
    path: str | None = None  # a prefix: "/api/chat", "/v1/"
    ui: bool = True  # False: leave out the web UI's own requests (see ui_request_filter)
    node: str | None = None  # the node that answered (DESKML_NODE_NAME)
    request_id: str | None = None  # every row of one request, on every node it passed through
    row_id: int | None = None  # one row
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: tuple[datetime, int] | None = None  # rows older than this (created_at, id): the previous page's last


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(created_at: datetime, row_id: int) -> str:
    """A page boundary as text: microseconds since 1970 and the row id ("1764934800123456-42")."""
    when = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    return f"{(when - _EPOCH) // timedelta(microseconds=1)}-{row_id}"


def parse_cursor(text: str) -> tuple[datetime, int]:
    micros, sep, row_id = text.strip().partition("-")
    if not sep or not micros.isdigit() or not row_id.isdigit() or len(micros) > 17 or len(row_id) > 19:
        raise BadRequest("cursor: pass the next_cursor of the previous page", param="cursor")
    return _EPOCH + timedelta(microseconds=int(micros)), int(row_id)


def parse_time(value: str, *, name: str) -> datetime:
    """ISO 8601, Unix seconds, or a duration meaning "that long ago" ('1h', '30m', '7d')."""
    text = value.strip()
    try:
        return _parse_time(text)
    except (OverflowError, OSError, ValueError):  # a time or duration past what datetime can hold
        raise BadRequest(f"{name}: out of range", param=name) from None
    except BadRequest:
        raise BadRequest(f"{name}: use an ISO time, Unix seconds, or a duration like '1h' or '7d'",
                         param=name) from None


def _parse_time(text: str) -> datetime:
    if text.endswith("d") and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(days=float(text[:-1]))
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return datetime.fromtimestamp(seconds, UTC)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    except ValueError:
        pass
    return datetime.now(UTC) - timedelta(seconds=parse_duration(text))


def _status_filter(status: str) -> Any:
    text = status.strip().lower()
    # A stream that failed after its 200 went out, or whose client left, has an error but a 2xx status.
    if text == "error":
        return sa.or_(HistoryRow.status >= 400, HistoryRow.error.is_not(None))
    if text == "ok":
        return sa.and_(HistoryRow.status < 400, HistoryRow.error.is_(None))
    if len(text) == 3 and text[0].isdigit() and text[1:] == "xx":
        low = int(text[0]) * 100
        return sa.and_(HistoryRow.status >= low, HistoryRow.status < low + 100)
    if text.isdigit():
        return HistoryRow.status == int(text)
    raise BadRequest("status: use a code like 200, a class like 4xx, 'ok' or 'error'", param="status")


def query(db: Database, q: HistoryQuery, *, content: bool = True) -> tuple[list[dict[str, Any]], str | None]:
    """One page of history, newest first, and the cursor of the next page (None at the end).

    Newest by `created_at` (when the request arrived), then by id: several nodes write to one database
    and their rows reach it out of order, so insert order is not time order."""
    if not 1 <= q.limit <= 1000:
        raise BadRequest("limit must be between 1 and 1000", param="limit")
    stmt = (sa.select(HistoryRow).order_by(HistoryRow.created_at.desc(), HistoryRow.id.desc())
            .limit(q.limit + 1))
    if q.model:
        stmt = stmt.where(HistoryRow.model == q.model)
    if q.user:
        stmt = stmt.where(HistoryRow.principal_id == q.user)
    if q.status:
        stmt = stmt.where(_status_filter(q.status))
    if q.dialect:
        stmt = stmt.where(HistoryRow.dialect == q.dialect)
    if q.node:
        stmt = stmt.where(HistoryRow.node == q.node)
    if q.request_id:
        stmt = stmt.where(HistoryRow.request_id == q.request_id)
    if q.row_id is not None:
        stmt = stmt.where(HistoryRow.id == q.row_id)
    if q.method:
        stmt = stmt.where(HistoryRow.method == q.method.strip().upper())
    if q.path:
        stmt = stmt.where(HistoryRow.path.startswith(q.path, autoescape=True))
    if not q.ui:
        stmt = stmt.where(sa.not_(ui_request_filter()))
    if q.since:
        stmt = stmt.where(HistoryRow.created_at >= q.since)
    if q.until:
        stmt = stmt.where(HistoryRow.created_at < q.until)
    if q.cursor is not None:
        when, last = q.cursor
        # Written so that every database can range-scan the (created_at, id) index on its first column.
        stmt = stmt.where(HistoryRow.created_at <= when,
                          sa.or_(HistoryRow.created_at < when, HistoryRow.id < last))
    with db.session() as session:
        rows = list(session.scalars(stmt))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    items = [row_dict(row, content) for row in rows]
    return items, (encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)


def row_dict(row: HistoryRow, content: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {
        column.key: getattr(row, column.key)
        for column in HistoryRow.__table__.columns
        if column.key not in {"input", "output"}
    }
    if content:
        item["input"] = json.loads(row.input) if row.input is not None else None
        item["output"] = json.loads(row.output) if row.output is not None else None
    return item


UI_PATHS = ("/", "/ui", "/favicon.ico")


def ui_request_filter() -> sa.ColumnElement[bool]:
    """Rows of the web UI's own making: its fetches (marked `X-Deskml-Client: ui`, kept in extra as
    client_app) and the page and its files, which a browser fetches without the mark."""
    marked = sa.func.coalesce(HistoryRow.extra["client_app"].as_string(), "") == "ui"
    return sa.or_(marked, HistoryRow.path.in_(UI_PATHS), HistoryRow.path.startswith("/ui/"))
