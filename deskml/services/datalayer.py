"""Start and stop the database-backed services (auth, history) for the app factory's lifespan."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from deskml.services.auth import AuthService, anonymous_allowed
from deskml.services.db import Database, redacted
from deskml.services.history import HistoryWriter
from deskml.settings import Settings

log = logging.getLogger("deskml.db")


async def start_data_services(state: Any, settings: Settings) -> None:
    """Open the database (migrating it), then put `db`, `auth` and `history` on `state` and register
    the history writer as a request-record sink."""
    db = Database.from_settings(settings)
    state.db = db
    await asyncio.to_thread(db.migrate)
    log.debug("database %s at revision head", redacted(db.url))
    if settings.auth == "off":
        # Still refuses an unprotected non-loopback bind without --insecure.
        await asyncio.to_thread(lambda: anonymous_allowed(settings, 0))
        state.auth = None
    else:
        state.auth = await asyncio.to_thread(AuthService.build, settings, db)
    sinks: list[Any] = getattr(state, "record_sinks", None) or []
    state.record_sinks = sinks
    state.history = None
    if settings.history:
        writer = HistoryWriter(db, settings)
        writer.start()
        sinks.append(writer.submit)
        state.history = writer


async def stop_data_services(state: Any) -> None:
    """Write what the history still buffers, then close the database."""
    writer: HistoryWriter | None = getattr(state, "history", None)
    if writer is not None:
        await writer.close()
    auth: AuthService | None = getattr(state, "auth", None)
    if auth is not None:
        await auth.close()
    db: Database | None = getattr(state, "db", None)
    if db is not None:
        db.close()
