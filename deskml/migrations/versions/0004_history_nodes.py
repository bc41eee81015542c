"""History across nodes: the node that answered each request, and an index for time order.

`node` is nullable: rows written before this revision do not know their node. The (created_at, id)
index serves GET /api/history's newest-first order and its keyset cursor; it replaces the index on
created_at alone, whose queries (time ranges, retention) it serves as well.

Revision ID: 0004_history_nodes
Revises: 0003_conversations
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_history_nodes"
down_revision = "0003_conversations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("request_history", sa.Column("node", sa.String(64), nullable=True))
    op.create_index("ix_request_history_node", "request_history", ["node"])
    op.create_index("ix_request_history_created_at_id", "request_history", ["created_at", "id"])
    op.drop_index("ix_request_history_created_at", table_name="request_history")


def downgrade() -> None:
    op.create_index("ix_request_history_created_at", "request_history", ["created_at"])
    op.drop_index("ix_request_history_created_at_id", table_name="request_history")
    op.drop_index("ix_request_history_node", table_name="request_history")
    # SQLite cannot drop a column in place: batch mode copies the table without it.
    with op.batch_alter_table("request_history") as batch:
        batch.drop_column("node")
