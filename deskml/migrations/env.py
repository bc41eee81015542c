"""Alembic environment for deskml's own schema.

deskml runs migrations programmatically (`Database.migrate`) and passes the connection in;
`alembic -c ...` from a shell also works: it then builds an engine from the URL in the config.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from deskml.services.db import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _run_with(conn)
        engine.dispose()
        return
    _run_with(connection)


def _run_with(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
