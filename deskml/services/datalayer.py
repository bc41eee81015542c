"""Start and stop the database-backed services (auth, history) for the app factory's lifespan."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from deskml.services.auth import AuthService, CredentialStore, anonymous_allowed
from deskml.services.db import Database, redacted
from deskml.services.fileperms import sqlite_path, warn_if_loose
from deskml.services.history import HistoryWriter
from deskml.services.netinfo import is_loopback
from deskml.settings import Settings

log = logging.getLogger("deskml.db")


async def start_data_services(state: Any, settings: Settings) -> None:
    """Open the database (migrating it), then put `db`, `auth` and `history` on `state` and register
    the history writer as a request-record sink."""
    db = Database.from_settings(settings)
    state.db = db
    await asyncio.to_thread(db.migrate)
    log.debug("database %s at revision head", redacted(db.url))
    warn_if_loose(settings.data_dir, sqlite_path(db.url))
    if settings.auth == "off":
        # Still refuses an unprotected non-loopback bind without --insecure.
        await asyncio.to_thread(lambda: anonymous_allowed(settings, 0))
        state.auth = None
    else:
        state.auth = await asyncio.to_thread(AuthService.build, settings, db)
    sinks: list[Any] | None = getattr(state, "record_sinks", None)
    if sinks is None:
        sinks = state.record_sinks = []
    state.history = None
    if settings.history:
        writer = HistoryWriter(db, settings, node=getattr(state, "node_id", None))
        writer.start()
        sinks.append(writer.submit)
        state.history = writer


async def stop_data_services(state: Any) -> None:
    """Write what the history still buffers, then close the database."""
    writer: HistoryWriter | None = getattr(state, "history", None)
    if writer is not None:
        try:
            await writer.close()
        except Exception:  # close() does not raise; shutdown must go on even if that ever changes
            log.exception("history: closing the writer failed")
    auth: AuthService | None = getattr(state, "auth", None)
    if auth is not None:
        await auth.close()
    db: Database | None = getattr(state, "db", None)
    if db is not None:
        db.close()


def preflight(settings: Settings) -> None:
    """Before the server binds: migrate the database and refuse an unprotected network bind.

    Raises DatabaseError or InsecureBind, whose messages are meant for the person starting it.
    """
    db = Database.from_settings(settings)
    try:
        db.migrate()
        credentials = CredentialStore(db).count_credentials()
    finally:
        db.close()
    anonymous_allowed(settings, credentials)


def summary(state: Any) -> list[str]:
    """Banner lines: how callers authenticate and where history goes."""
    auth: AuthService | None = getattr(state, "auth", None)
    db: Database | None = getattr(state, "db", None)
    lines = []
    if auth is None:
        lines.append("  auth: off (DESKML_AUTH=off): every caller has every scope")
    elif not auth.allow_anonymous:
        lines.append("  auth: an API key or a login token is required (deskml keys create --name NAME)")
    elif is_loopback(auth.settings.host):
        lines.append("  auth: optional on loopback (callers without a key get every scope)")
    else:
        lines.append("  auth: NONE (--insecure): anyone on the network can use every endpoint")
    writer: HistoryWriter | None = getattr(state, "history", None)
    if db is not None:
        where = redacted(db.url)
        lines.append(f"  history: {where}" if writer is not None else f"  history: off (database {where})")
    return lines
