"""Synchronous database access for jobs, files and trained models (called from worker threads).

A job is run by whoever *claims* it: one conditional UPDATE moves it from PENDING to PROGRESS (or
takes over a PROGRESS job whose runner stopped sending heartbeats), so two executors can never run
the same job at once, whether they are embedded threads of several servers or Celery workers that
got the same message twice. Every later write of a runner is conditional on it still holding the
job (`worker` = its id, state PROGRESS): a cancelled job stays cancelled whatever its runner writes.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import sqlalchemy as sa

from deskml.runtime.jobs.tables import (
    CANCELLED,
    FAILURE,
    PENDING,
    PROGRESS,
    SUCCESS,
    TERMINAL,
    FileChunkRow,
    FileRow,
    JobRow,
    TrainedModelRow,
)
from deskml.services.db import Database, utcnow

CHUNK_BYTES = 1 << 20  # one row per MiB keeps every statement under MySQL's default max_allowed_packet
STALE_HEARTBEATS = 4  # a runner silent this many heartbeat periods is taken as dead


@dataclass(frozen=True)
class JobInfo:
    id: str
    kind: str
    owner: str
    executor: str
    params: dict[str, Any]
    state: str
    current: int
    total: int
    message: str
    stats: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _job_info(row: JobRow) -> JobInfo:
    return JobInfo(
        id=row.id, kind=row.kind, owner=row.owner, executor=row.executor, params=dict(row.params or {}),
        state=row.state, current=row.current, total=row.total, message=row.message or "",
        stats=dict(row.stats or {}), result=row.result, error=row.error, attempts=row.attempts,
        max_attempts=row.max_attempts, worker=row.worker, created_at=row.created_at, started_at=row.started_at,
        heartbeat_at=row.heartbeat_at, finished_at=row.finished_at, updated_at=row.updated_at,
    )


@dataclass(frozen=True)
class FileInfo:
    id: str
    owner: str
    purpose: str
    filename: str
    format: str
    bytes: int
    sha256: str
    meta: dict[str, Any]
    created_at: datetime


def _file_info(row: FileRow) -> FileInfo:
    return FileInfo(row.id, row.owner, row.purpose, row.filename, row.format, row.bytes, row.sha256,
                    dict(row.meta or {}), row.created_at)


@dataclass(frozen=True)
class TrainedInfo:
    name: str
    kind: str
    base: str
    labels: list[str]
    metrics: dict[str, Any]
    sha256: str
    size: int
    job_id: str | None
    owner: str
    created_at: datetime


ClaimOutcome = Literal["run", "busy", "done", "missing"]


def new_job_id(kind: str) -> str:
    # OpenAI clients expect batch ids to look like `batch_...`; the seed's Celery ids are UUIDs.
    return f"batch_{secrets.token_hex(12)}" if kind == "batch" else str(uuid.uuid4())


class JobStore:
    def __init__(self, db: Database, heartbeat_seconds: float = 5.0) -> None:
        self.db = db
        self.heartbeat_seconds = heartbeat_seconds

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_seconds * STALE_HEARTBEATS)

    # jobs ------------------------------------------------------------------------------------
    def create(self, kind: str, owner: str, params: dict[str, Any], executor: str, max_attempts: int = 2,
               job_id: str | None = None) -> JobInfo:
        now = utcnow()
        row = JobRow(
            id=job_id or new_job_id(kind), kind=kind, owner=owner, executor=executor, params=params, state=PENDING,
            current=0, total=0, message="queued", attempts=0, max_attempts=max_attempts, created_at=now,
            updated_at=now,
        )
        with self.db.session() as session:
            session.add(row)
        return _job_info(row)

    def get(self, job_id: str) -> JobInfo | None:
        with self.db.session() as session:
            row = session.get(JobRow, job_id)
            return _job_info(row) if row is not None else None

    def list(self, owner: str | None = None, state: str | None = None, kind: str | None = None,
             limit: int = 50, before: datetime | None = None) -> list[JobInfo]:
        query = sa.select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
        if owner is not None:
            query = query.where(JobRow.owner == owner)
        if state is not None:
            query = query.where(JobRow.state == state)
        if kind is not None:
            query = query.where(JobRow.kind == kind)
        if before is not None:
            query = query.where(JobRow.created_at < before)
        with self.db.session() as session:
            return [_job_info(row) for row in session.scalars(query)]

    def claim(self, job_id: str, worker: str) -> tuple[ClaimOutcome, JobInfo | None]:
        """Take the job to run it: 'run' (it is ours now), 'busy' (a live runner holds it),
        'done' (terminal, or failed here because its attempts are spent), 'missing'."""
        now = utcnow()
        with self.db.session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                return "missing", None
            if row.state in TERMINAL:
                if row.state == CANCELLED and row.finished_at is None:
                    self._close_cancelled(session, job_id, now)
                return "done", _job_info(row)
            fresh = row.heartbeat_at is not None and now - row.heartbeat_at < self.stale_after
            if row.state == PROGRESS and fresh:
                return "busy", _job_info(row)
            where = [JobRow.id == job_id, JobRow.state == row.state, JobRow.attempts == row.attempts]
            if row.state == PROGRESS and row.attempts >= row.max_attempts:
                reason = (f"the process running this job ({row.worker}) stopped during attempt "
                          f"{row.attempts} of {row.max_attempts}; not retried again")
                session.execute(sa.update(JobRow).where(*where).values(
                    state=FAILURE, error=reason, message=reason, finished_at=now, updated_at=now))
                session.flush()
                session.expire_all()
                return "done", _job_info(session.get(JobRow, job_id))  # type: ignore[arg-type]
            message = "started" if row.state == PENDING else (
                f"retrying: the process running it ({row.worker}) stopped (attempt {row.attempts + 1} of "
                f"{row.max_attempts})")
            done = session.execute(sa.update(JobRow).where(*where).values(
                state=PROGRESS, worker=worker, attempts=row.attempts + 1, heartbeat_at=now,
                started_at=row.started_at or now, updated_at=now, message=message,
            ))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return "busy", _job_info(row)
            session.flush()
            session.expire_all()
            return "run", _job_info(session.get(JobRow, job_id))  # type: ignore[arg-type]

    def heartbeat(self, job_id: str, worker: str) -> bool:
        """Refresh our lease; False when the job is no longer ours (cancelled, or taken over)."""
        now = utcnow()
        with self.db.session() as session:
            done = session.execute(sa.update(JobRow).where(
                JobRow.id == job_id, JobRow.worker == worker, JobRow.state == PROGRESS,
            ).values(heartbeat_at=now))
            return done.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def keep(self, job_id: str, worker: str) -> bool:
        """The heartbeat keeper's refresh (lease.py): as `heartbeat`, and also while the runner of a
        cancelled job winds down and saves what it made, so that no scan closes the job under it."""
        now = utcnow()
        with self.db.session() as session:
            done = cast("sa.CursorResult[Any]", session.execute(sa.update(JobRow).where(
                JobRow.id == job_id, JobRow.worker == worker,
                sa.or_(JobRow.state == PROGRESS, sa.and_(JobRow.state == CANCELLED, JobRow.finished_at.is_(None))),
            ).values(heartbeat_at=now)))
            return done.rowcount == 1

    def progress(self, job_id: str, worker: str, current: int, total: int, message: str,
                 stats: dict[str, Any] | None = None) -> bool:
        now = utcnow()
        values: dict[str, Any] = {"current": current, "total": total, "message": message[:2000],
                                  "heartbeat_at": now, "updated_at": now}
        if stats is not None:
            values["stats"] = stats
        with self.db.session() as session:
            done = session.execute(sa.update(JobRow).where(
                JobRow.id == job_id, JobRow.worker == worker, JobRow.state == PROGRESS).values(**values))
            return done.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def finish(self, job_id: str, worker: str, state: str, *, result: dict[str, Any] | None = None,
               error: str | None = None, message: str = "", stats: dict[str, Any] | None = None) -> bool:
        """Record how a run ended; only the runner that holds the job may."""
        now = utcnow()
        values: dict[str, Any] = {"state": state, "result": result, "error": error, "finished_at": now,
                                  "updated_at": now, "message": message[:2000]}
        if stats is not None:
            values["stats"] = stats
        if state == SUCCESS:
            values["current"] = JobRow.total
        with self.db.session() as session:
            done = session.execute(sa.update(JobRow).where(
                JobRow.id == job_id, JobRow.worker == worker, JobRow.state == PROGRESS).values(**values))
            return done.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def release(self, job_id: str, worker: str, message: str) -> bool:
        """Give a job back to the queue without spending an attempt (a worker shutting down)."""
        now = utcnow()
        with self.db.session() as session:
            done = session.execute(sa.update(JobRow).where(
                JobRow.id == job_id, JobRow.worker == worker, JobRow.state == PROGRESS,
            ).values(state=PENDING, worker=None, heartbeat_at=None, attempts=JobRow.attempts - 1,
                     message=message, updated_at=now))
            return done.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def settle_cancelled(self, job_id: str, worker: str, result: dict[str, Any] | None,
                         stats: dict[str, Any] | None = None) -> None:
        """The runner of a cancelled job has stopped: note when, and what it had made so far."""
        now = utcnow()
        values: dict[str, Any] = {"finished_at": now, "updated_at": now}
        if result is not None:
            values["result"] = result
        if stats is not None:
            values["stats"] = stats
        with self.db.session() as session:
            session.execute(sa.update(JobRow).where(
                JobRow.id == job_id, JobRow.worker == worker, JobRow.state == CANCELLED,
                JobRow.finished_at.is_(None)).values(**values))

    def cancel(self, job_id: str) -> JobInfo | None:
        """CANCELLED at once; a queued job never starts, a running one's runner stops at its next check."""
        now = utcnow()
        with self.db.session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                return None
            if row.state not in TERMINAL:
                values: dict[str, Any] = {"state": CANCELLED, "message": "cancelled", "updated_at": now,
                                          "error": "cancelled by request"}
                if row.state == PENDING:
                    values["finished_at"] = now
                session.execute(sa.update(JobRow).where(JobRow.id == job_id, JobRow.state == row.state)
                                .values(**values))
                session.flush()
                session.expire_all()
                row = session.get(JobRow, job_id)
            return _job_info(row) if row is not None else None

    def _close_cancelled(self, session: Any, job_id: str, now: datetime) -> None:
        session.execute(sa.update(JobRow).where(JobRow.id == job_id, JobRow.finished_at.is_(None))
                        .values(finished_at=now, updated_at=now))

    def runnable(self, executor: str, limit: int = 100) -> builtins.list[str]:
        """Jobs an executor of this kind should try to claim: queued ones, oldest first, and running
        ones whose runner went silent (cancelled ones included, to close them)."""
        with self.db.session() as session:
            queued = list(session.scalars(
                sa.select(JobRow.id).where(JobRow.executor == executor, JobRow.state == PENDING)
                .order_by(JobRow.created_at).limit(limit)))
        return self.abandoned(executor, limit) + queued

    def abandoned(self, executor: str, limit: int = 100, silent_for: timedelta | None = None) -> builtins.list[str]:
        """Running (or cancelled, not yet closed) jobs of this executor whose runner went silent
        (for `silent_for`, by default the stale period)."""
        stale = utcnow() - (silent_for or self.stale_after)
        with self.db.session() as session:
            return list(session.scalars(sa.select(JobRow.id).where(
                JobRow.executor == executor,
                sa.or_(JobRow.state == PROGRESS, sa.and_(JobRow.state == CANCELLED, JobRow.finished_at.is_(None))),
                sa.or_(JobRow.heartbeat_at.is_(None), JobRow.heartbeat_at < stale),
            ).limit(limit)))

    # files -----------------------------------------------------------------------------------
    def save_file(self, owner: str, purpose: str, filename: str, fmt: str, data: bytes,
                  meta: dict[str, Any] | None = None) -> FileInfo:
        file_id = f"file-{secrets.token_hex(12)}"
        chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
        row = FileRow(id=file_id, owner=owner, purpose=purpose, filename=_label(filename), format=fmt,
                      bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), meta=meta, chunks=len(chunks),
                      created_at=utcnow())
        with self.db.session() as session:
            session.add(row)
            session.flush()
            for seq, chunk in enumerate(chunks):
                session.add(FileChunkRow(file_id=file_id, seq=seq, data=chunk))
                session.flush()  # one chunk at a time in the session's memory and on the wire
                session.expunge_all()
        return _file_info(row)

    def file(self, file_id: str) -> FileInfo | None:
        with self.db.session() as session:
            row = session.get(FileRow, file_id)
            return _file_info(row) if row is not None else None

    def files(self, owner: str | None = None, purpose: str | None = None, limit: int = 100) -> builtins.list[FileInfo]:
        query = sa.select(FileRow).order_by(FileRow.created_at.desc()).limit(limit)
        if owner is not None:
            query = query.where(FileRow.owner == owner)
        if purpose is not None:
            query = query.where(FileRow.purpose == purpose)
        with self.db.session() as session:
            return [_file_info(row) for row in session.scalars(query)]

    def iter_file(self, file_id: str) -> Iterator[bytes]:
        with self.db.session() as session:
            count = session.scalar(sa.select(FileRow.chunks).where(FileRow.id == file_id)) or 0
        for seq in range(count):
            with self.db.session() as session:
                yield session.scalar(sa.select(FileChunkRow.data).where(
                    FileChunkRow.file_id == file_id, FileChunkRow.seq == seq)) or b""

    def read_file(self, file_id: str) -> bytes:
        return b"".join(self.iter_file(file_id))

    def delete_file(self, file_id: str) -> bool:
        with self.db.session() as session:
            session.execute(sa.delete(FileChunkRow).where(FileChunkRow.file_id == file_id))
            done = session.execute(sa.delete(FileRow).where(FileRow.id == file_id))
            return done.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    # trained models ----------------------------------------------------------------------------
    def save_model(self, name: str, kind: str, base: str, labels: builtins.list[str], metrics: dict[str, Any],
                   artifact: bytes, job_id: str | None, owner: str) -> TrainedInfo:
        row = TrainedModelRow(name=name, kind=kind, base=base, labels=labels, metrics=metrics, artifact=artifact,
                              sha256=hashlib.sha256(artifact).hexdigest(), job_id=job_id, owner=owner,
                              created_at=utcnow())
        with self.db.session() as session:
            session.execute(sa.delete(TrainedModelRow).where(TrainedModelRow.name == name))
            session.add(row)
        return self._trained_info(row, len(artifact))

    @staticmethod
    def _trained_info(row: TrainedModelRow, size: int) -> TrainedInfo:
        return TrainedInfo(row.name, row.kind, row.base, list(row.labels), dict(row.metrics or {}), row.sha256,
                           size, row.job_id, row.owner, row.created_at)

    def models(self) -> builtins.list[TrainedInfo]:
        size = sa.func.length(TrainedModelRow.artifact)
        query = sa.select(TrainedModelRow.name, TrainedModelRow.kind, TrainedModelRow.base, TrainedModelRow.labels,
                          TrainedModelRow.metrics, TrainedModelRow.sha256, size, TrainedModelRow.job_id,
                          TrainedModelRow.owner, TrainedModelRow.created_at).order_by(TrainedModelRow.name)
        with self.db.session() as session:
            return [TrainedInfo(r[0], r[1], r[2], list(r[3]), dict(r[4] or {}), r[5], int(r[6] or 0), r[7], r[8],
                                r[9]) for r in session.execute(query)]

    def model_artifact(self, name: str) -> bytes | None:
        with self.db.session() as session:
            return session.scalar(sa.select(TrainedModelRow.artifact).where(TrainedModelRow.name == name))

    def delete_model(self, name: str) -> bool:
        with self.db.session() as session:
            done = session.execute(sa.delete(TrainedModelRow).where(TrainedModelRow.name == name))
            return done.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def _label(filename: str) -> str:
    """The client's file name reduced to a display label: its last path part, printable, bounded."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or "upload"
