"""Background jobs: jobs, uploaded files (chunked), trained models.

Revision ID: 0002_jobs
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002_jobs"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision.
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
LONG_BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
STAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("executor", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("current", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", LONG_TEXT, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("started_at", STAMP, nullable=True),
        sa.Column("heartbeat_at", STAMP, nullable=True),
        sa.Column("finished_at", STAMP, nullable=True),
        sa.Column("updated_at", STAMP, nullable=False),
    )
    op.create_index("ix_jobs_owner_created", "jobs", ["owner", "created_at"])
    op.create_table(
        "job_files",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
    )
    op.create_index("ix_job_files_owner_created", "job_files", ["owner", "created_at"])
    op.create_table(
        "job_file_chunks",
        sa.Column("file_id", sa.String(64), sa.ForeignKey("job_files.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", LONG_BLOB, nullable=False),
    )
    op.create_table(
        "trained_models",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("base", sa.String(100), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("artifact", LONG_BLOB, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trained_models")
    op.drop_table("job_file_chunks")
    op.drop_index("ix_job_files_owner_created", table_name="job_files")
    op.drop_table("job_files")
    op.drop_index("ix_jobs_owner_created", table_name="jobs")
    op.drop_table("jobs")
