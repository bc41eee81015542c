"""Initial schema: API keys, users, server secrets, request history.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision (models may change later).
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, index=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("revoked_at", STAMP, nullable=True),
        sa.Column("last_used_at", STAMP, nullable=True),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(100), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("disabled_at", STAMP, nullable=True),
        sa.Column("last_login_at", STAMP, nullable=True),
    )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
    )
    op.create_table(
        "request_history",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("dialect", sa.String(16), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False, index=True),
        sa.Column("model", sa.String(255), nullable=True, index=True),
        sa.Column("backend", sa.String(64), nullable=True),
        sa.Column("principal_id", sa.String(200), nullable=True, index=True),
        sa.Column("principal_kind", sa.String(16), nullable=True),
        sa.Column("client", sa.String(128), nullable=True),
        sa.Column("cache", sa.String(16), nullable=True),
        sa.Column("duration_ns", sa.BigInteger(), nullable=False),
        sa.Column("queue_ns", sa.BigInteger(), nullable=False),
        sa.Column("load_ns", sa.BigInteger(), nullable=False),
        sa.Column("prompt_eval_ns", sa.BigInteger(), nullable=False),
        sa.Column("eval_ns", sa.BigInteger(), nullable=False),
        sa.Column("ttft_ns", sa.BigInteger(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("error", LONG_TEXT, nullable=True),
        sa.Column("input", LONG_TEXT, nullable=True),
        sa.Column("output", LONG_TEXT, nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
    )
    op.create_index("ix_request_history_created_at", "request_history", ["created_at"])


def downgrade() -> None:
    op.drop_table("request_history")
    op.drop_table("server_secrets")
    op.drop_table("users")
    op.drop_table("api_keys")
