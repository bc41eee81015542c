"""`deskml keys`, `deskml users`, `deskml history` and `deskml db`: they work on the database
directly (the same one the server uses, from DESKML_DATABASE_URL or the data dir), so the first
key can be made before the server ever starts."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from deskml.cli.client import fail
from deskml.core.errors import DeskmlError
from deskml.settings import Settings

console = Console()
err = Console(stderr=True)

keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
users_app = typer.Typer(no_args_is_help=True, help="Create, list and delete users who sign in with a password.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema: upgrade, current revision.")


def _database() -> Any:
    from deskml.services.db import Database, DatabaseError

    settings = Settings()
    try:
        db = Database.from_settings(settings)
        db.migrate()
    except DatabaseError as exc:
        raise fail(str(exc)) from None
    return db


def _store() -> Any:
    from deskml.services.auth import CredentialStore

    return CredentialStore(_database())


def _guard(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except DeskmlError as exc:
        raise fail(exc.message) from None


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _limits(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"--limits must be a JSON object: {exc}", 2) from None
    if not isinstance(value, dict):
        raise fail("--limits must be a JSON object", 2)
    return value


# keys ------------------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", "-n", help="What the key is for, e.g. phone."),
    scopes: str = typer.Option("inference,models", help="Comma-separated: inference, models, admin, or all."),
    limits: str | None = typer.Option(
        None, help='Per-key rate limits as JSON, e.g. \'{"requests_per_minute": 60}\'.'),
) -> None:
    """Create a key. It is printed once and stored only as a hash: copy it now."""
    from deskml.services.auth import parse_scopes

    parsed = _guard(parse_scopes, scopes)
    store = _store()
    info, plaintext = _guard(store.create_key, name, parsed, _limits(limits))
    err.print(f"Created key [bold]{info.name}[/bold] (id {info.id}, scopes {', '.join(sorted(info.scopes))}).")
    err.print("Copy it now; it will not be shown again. Apps send it as 'Authorization: Bearer <key>'.",
              soft_wrap=True)
    print(plaintext)


@keys_app.command("list")
def keys_list(revoked: bool = typer.Option(False, "--revoked", help="Include revoked keys.")) -> None:
    """List keys (never the keys themselves)."""
    table = Table("ID", "NAME", "SCOPES", "CREATED", "LAST USED", "REVOKED", box=None, pad_edge=False)
    for key in _store().list_keys(revoked):
        table.add_row(key.id, key.name, ",".join(sorted(key.scopes)), _when(key.created_at), _when(key.last_used_at),
                      _when(key.revoked_at))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(id_or_name: str = typer.Argument(..., help="The key's id or name.")) -> None:
    """Revoke a key: requests with it get 401 (a running server notices within DESKML_AUTH_CACHE_SECONDS)."""
    for key in _guard(_store().revoke_key, id_or_name):
        console.print(f"revoked key {key.id} ({key.name})")


# users -----------------------------------------------------------------------------------------
def _read_password(stdin: bool) -> str:
    if stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise fail("the passwords differ")
    return first


@users_app.command("create")
def users_create(
    username: str,
    scopes: str = typer.Option("all", help="Comma-separated: inference, models, admin, or all."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    limits: str | None = typer.Option(None, help="Per-user rate limits as JSON."),
) -> None:
    """Create a user who signs in with POST /login {username, password}."""
    from deskml.services.auth import parse_scopes

    parsed = _guard(parse_scopes, scopes)
    password = _read_password(password_stdin)
    info = _guard(_store().create_user, username, password, parsed, _limits(limits))
    console.print(f"created user {info.username} (scopes {', '.join(sorted(info.scopes))})")


@users_app.command("passwd")
def users_passwd(
    username: str,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
) -> None:
    """Set a user's password."""
    _guard(_store().set_password, username, _read_password(password_stdin))
    console.print(f"password of {username} changed")


@users_app.command("list")
def users_list() -> None:
    """List users."""
    table = Table("USER", "SCOPES", "CREATED", "LAST LOGIN", box=None, pad_edge=False)
    for user in _store().list_users():
        table.add_row(user.username, ",".join(sorted(user.scopes)), _when(user.created_at), _when(user.last_login_at))
    console.print(table)


@users_app.command("delete")
def users_delete(username: str) -> None:
    """Delete a user (their tokens stop working within DESKML_AUTH_CACHE_SECONDS)."""
    _guard(_store().delete_user, username)
    console.print(f"deleted user {username}")


# db --------------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations (the server also does this at start)."""
    from deskml.services.db import redacted

    db = _database()
    console.print(f"{redacted(db.url)}: schema at revision {db.current_revision()}")


@db_app.command("current")
def db_current() -> None:
    """Show the database URL (password hidden) and its schema revision."""
    import sqlalchemy as sa

    from deskml.services.db import Database, DatabaseError, redacted

    try:
        db = Database.from_settings(Settings())
        revision = db.current_revision()
    except (DatabaseError, sa.exc.SQLAlchemyError) as exc:
        raise fail(str(exc)) from None
    console.print(f"{redacted(db.url)}: revision {revision or 'none (empty database)'}")


# history ---------------------------------------------------------------------------------------
def history(
    model: str | None = typer.Option(None, help="Only this model."),
    user: str | None = typer.Option(None, help="Only this key id or user name."),
    status: str | None = typer.Option(None, help="200, 4xx, ok or error (400 and up, or an error noted)."),
    node: str | None = typer.Option(None, help="Only rows of this node (its DESKML_NODE_NAME)."),
    request_id: str | None = typer.Option(None, "--request-id", help="Every row of one request, on each node."),
    since: str | None = typer.Option(None, help="ISO time, Unix seconds, or '1h' / '7d' ago."),
    until: str | None = typer.Option(None, help="ISO time, Unix seconds, or a duration ago."),
    limit: int = typer.Option(20, "--limit", "-n", help="Rows to show (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line, input and output included."),
    prune: bool = typer.Option(False, "--prune", help="Delete rows older than DESKML_HISTORY_DAYS and exit."),
) -> None:
    """Show the request history."""
    from deskml.services import history as hist

    db = _database()
    if prune:
        days = Settings().history_days
        console.print(f"deleted {hist.prune(db, days)} rows older than {days} days" if days > 0
                      else "DESKML_HISTORY_DAYS is 0: history is kept forever")
        return
    q = hist.HistoryQuery(
        model=model, user=user, status=status, limit=limit, node=node, request_id=request_id,
        since=_guard(lambda: hist.parse_time(since, name="since")) if since else None,
        until=_guard(lambda: hist.parse_time(until, name="until")) if until else None,
    )
    items, _ = _guard(lambda: hist.query(db, q, content=as_json))
    if as_json:
        for item in items:
            print(json.dumps(item, default=str, ensure_ascii=False))
        return
    table = Table("TIME", "STATUS", "METHOD", "PATH", "MODEL", "BACKEND", "NODE", "WHO", "MS", "TOKENS",
                  box=None, pad_edge=False)
    for item in reversed(items):
        table.add_row(
            _when(item["created_at"]), str(item["status"]), item["method"], item["path"], item["model"] or "-",
            item["backend"] or "-", item["node"] or "-", _who(item), f"{item['duration_ns'] / 1e6:.0f}",
            f"{item['prompt_tokens']}+{item['completion_tokens']}",
        )
    # Piped into grep or a file, the ten columns would be cut to the 80 a console assumes without a
    # terminal; on a terminal they fit its width as usual.
    (console if console.is_terminal else Console(width=240)).print(table)


def _who(item: dict[str, Any]) -> str:
    """The caller; a router's claim about its own caller is shown as a claim, never as the caller."""
    who = str(item["principal_id"] or "anonymous")
    claimed = (item.get("extra") or {}).get("via_principal")
    return f"{who} (for {claimed})" if claimed else who


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(users_app, name="users")
    app.add_typer(db_app, name="db")
    app.command("history")(history)
