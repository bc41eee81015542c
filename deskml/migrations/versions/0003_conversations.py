"""Web UI chat conversations, per principal.

Revision ID: 0003_conversations
Revises: 0002_jobs
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003_conversations"
down_revision = "0002_jobs"
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were at this revision.
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
STAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(220), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("system", LONG_TEXT, nullable=True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("messages", LONG_TEXT, nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
    )
    op.create_index("ix_conversations_owner_updated", "conversations", ["owner", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_owner_updated", table_name="conversations")
    op.drop_table("conversations")
