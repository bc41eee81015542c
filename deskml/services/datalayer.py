"""Open and close the database-backed services (database, auth, history) for the app's services
(deskml/container.py); the pre-start checks and the banner lines about them."""

from __future__ import annotations

import asyncio
import logging

from deskml.services.auth import AuthService, CredentialStore, anonymous_allowed
from deskml.services.db import Database, redacted
from deskml.services.fileperms import sqlite_path, warn_if_loose
from deskml.services.history import HistoryWriter
from deskml.services.netinfo import is_loopback
from deskml.settings import Settings

log = logging.getLogger("deskml.db")


async def open_database(settings: Settings) -> Database:
    """The database, migrated to the head revision."""
    db = Database.from_settings(settings)
    try:
        await asyncio.to_thread(db.migrate)
    except BaseException:
        db.close()
        raise
    log.debug("database %s at revision head", redacted(db.url))
    warn_if_loose(settings.data_dir, sqlite_path(db.url))
    return db


async def open_auth(settings: Settings, db: Database) -> AuthService | None:
    """The auth service; None with DESKML_AUTH=off (which still refuses an unprotected non-loopback
    bind without --insecure)."""
    if settings.auth == "off":
        await asyncio.to_thread(lambda: anonymous_allowed(settings, 0))
        return None
    return await asyncio.to_thread(AuthService.build, settings, db)


def start_history(settings: Settings, db: Database, node_id: str | None) -> HistoryWriter | None:
    """The running history writer (a request-record sink); None with DESKML_HISTORY=false."""
    if not settings.history:
        return None
    writer = HistoryWriter(db, settings, node=node_id)
    writer.start()
    return writer


async def close_history(writer: HistoryWriter) -> None:
    """Write what the history still buffers."""
    try:
        await writer.close()
    except Exception:  # close() does not raise; shutdown must go on even if that ever changes
        log.exception("history: closing the writer failed")


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


def summary(auth: AuthService | None, db: Database, writer: HistoryWriter | None) -> list[str]:
    """Banner lines: how callers authenticate and where history goes."""
    lines = []
    if auth is None:
        lines.append("  auth: off (DESKML_AUTH=off): every caller has every scope")
    elif not auth.allow_anonymous:
        lines.append("  auth: an API key or a login token is required (deskml keys create --name NAME)")
    elif is_loopback(auth.settings.host):
        lines.append("  auth: optional on loopback (callers without a key get every scope)")
    else:
        lines.append("  auth: NONE (--insecure): anyone on the network can use every endpoint")
    where = redacted(db.url)
    lines.append(f"  history: {where}" if writer is not None else f"  history: off (database {where})")
    return lines
