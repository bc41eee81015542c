"""Database tables of the job system: jobs, uploaded files (stored in chunks), trained models.

Everything a job needs lives in the database, so a Celery worker on another machine needs nothing
but the database and the broker: datasets and batch inputs are read from `job_file_chunks`, output
files are written there, and trained classifiers (small: a linear head over frozen embeddings or
image features) are stored in `trained_models`, from which every deskml node serves them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from deskml.services.db import Base, LongText, UtcDateTime, utcnow

# MySQL's BLOB holds 64 KB; chunks and model artifacts are larger.
LongBlob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

PENDING, PROGRESS, SUCCESS, FAILURE, CANCELLED = "PENDING", "PROGRESS", "SUCCESS", "FAILURE", "CANCELLED"
TERMINAL = frozenset({SUCCESS, FAILURE, CANCELLED})
STATES = (PENDING, PROGRESS, SUCCESS, FAILURE, CANCELLED)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (sa.Index("ix_jobs_owner_created", "owner", "created_at"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    owner: Mapped[str] = mapped_column(sa.String(200))
    executor: Mapped[str] = mapped_column(sa.String(16))  # embedded | celery
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    current: Mapped[int] = mapped_column(sa.Integer, default=0)
    total: Mapped[int] = mapped_column(sa.Integer, default=0)
    message: Mapped[str] = mapped_column(sa.Text, default="")
    stats: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(LongText, nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer, default=2)
    worker: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FileRow(Base):
    __tablename__ = "job_files"
    __table_args__ = (sa.Index("ix_job_files_owner_created", "owner", "created_at"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(200))
    purpose: Mapped[str] = mapped_column(sa.String(32))
    # The client's name, kept only as a label to show back (OpenAI's `filename`); never a path.
    filename: Mapped[str] = mapped_column(sa.String(255))
    format: Mapped[str] = mapped_column(sa.String(16))
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    meta: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    chunks: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FileChunkRow(Base):
    __tablename__ = "job_file_chunks"

    file_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("job_files.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LongBlob)


class TrainedModelRow(Base):
    __tablename__ = "trained_models"

    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))  # text-classify | classify
    base: Mapped[str] = mapped_column(sa.String(100))  # the frozen model whose features the head reads
    labels: Mapped[list[str]] = mapped_column(sa.JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    artifact: Mapped[bytes] = mapped_column(LongBlob)  # npz: coef, intercept (no pickle)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    job_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    owner: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
