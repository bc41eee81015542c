"""API keys, users with passwords, login tokens (JWT), and who may bind where.

Keys look like `dk_<id>_<secret>`: the id is public (it names the key in lists and history), the
secret is 256 random bits stored only as its SHA-256 (a slow hash adds nothing to a random secret
that long) and compared in constant time. Passwords are hashed with argon2id. The JWT signing
key is generated on first start and kept in the database, so every process on the same database
accepts the same tokens and nothing secret lives in the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from deskml.core.errors import BadRequest, Busy, Conflict, NotFound, Unauthorized
from deskml.core.principal import ALL_SCOPES, Principal
from deskml.services.db import ApiKey, Database, ServerSecret, User, utcnow
from deskml.services.netinfo import is_loopback
from deskml.settings import Settings

log = logging.getLogger("deskml.auth")

KEY_PREFIX = "dk_"
JWT_ALGORITHM = "HS256"
JWT_ISSUER = "deskml"
_SIGNING_SECRET = "jwt_signing_key"
TOUCH_EVERY_S = 60.0  # last_used_at is a hint, not an audit log: one write a minute per key at most


# scopes ----------------------------------------------------------------------------------------
def parse_scopes(text: str | list[str] | None, default: frozenset[str] = ALL_SCOPES) -> frozenset[str]:
    """'inference,models' or ['inference', 'models'] or 'all' -> a validated set of scopes."""
    if text is None:
        return default
    items = text.replace(",", " ").split() if isinstance(text, str) else [str(s).strip() for s in text]
    if "all" in items:
        return ALL_SCOPES
    unknown = sorted(set(items) - ALL_SCOPES)
    if unknown:
        raise BadRequest(f"unknown scope(s) {', '.join(unknown)}: use {', '.join(sorted(ALL_SCOPES))} or all")
    if not items:
        raise BadRequest("at least one scope is needed")
    return frozenset(items)


def scopes_text(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


def _scopes_of(stored: str) -> frozenset[str]:
    return frozenset(stored.split()) & ALL_SCOPES


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(token: str) -> tuple[str, str] | None:
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 16:
        return None
    return key_id, secret


# the store: plain synchronous database calls, shared by the server (in threads) and the CLI ------
@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    scopes: frozenset[str]
    limits: dict[str, Any] | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class UserInfo:
    username: str
    scopes: frozenset[str]
    limits: dict[str, Any] | None
    created_at: datetime
    last_login_at: datetime | None


def _key_info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, _scopes_of(row.scopes), row.limits, row.created_at, row.revoked_at,
                   row.last_used_at)


def _user_info(row: User) -> UserInfo:
    return UserInfo(row.username, _scopes_of(row.scopes), row.limits, row.created_at, row.last_login_at)


class CredentialStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Verifying a password for an unknown user still costs one argon2 verify, so response time
        # does not reveal which user names exist.
        self._dummy_hash: str | None = None

    @staticmethod
    def _hasher() -> Any:
        from argon2 import PasswordHasher

        return PasswordHasher()

    # keys
    def create_key(self, name: str, scopes: frozenset[str] = ALL_SCOPES,
                   limits: dict[str, Any] | None = None) -> tuple[KeyInfo, str]:
        """A new key; the returned plaintext is the only copy there will ever be."""
        name = name.strip()
        if not name:
            raise BadRequest("a key needs a name")
        with self.db.session() as session:
            active = session.scalar(sa.select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
            if active is not None:
                raise Conflict(f"an active key named '{name}' exists already (id {active}): "
                               "revoke it or pick another name")
            key_id, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
            row = ApiKey(id=key_id, name=name, secret_hash=_hash_secret(secret), scopes=scopes_text(scopes),
                         limits=limits, created_at=utcnow())
            session.add(row)
        return _key_info(row), f"{KEY_PREFIX}{key_id}_{secret}"

    def list_keys(self, include_revoked: bool = False) -> list[KeyInfo]:
        with self.db.session() as session:
            query = sa.select(ApiKey).order_by(ApiKey.created_at)
            if not include_revoked:
                query = query.where(ApiKey.revoked_at.is_(None))
            return [_key_info(row) for row in session.scalars(query)]

    def revoke_key(self, id_or_name: str) -> list[KeyInfo]:
        with self.db.session() as session:
            rows = list(session.scalars(sa.select(ApiKey).where(
                sa.or_(ApiKey.id == id_or_name, ApiKey.name == id_or_name), ApiKey.revoked_at.is_(None))))
            if not rows:
                raise NotFound(f"no active key with id or name '{id_or_name}'")
            for row in rows:
                row.revoked_at = utcnow()
            return [_key_info(row) for row in rows]

    def verify_key(self, token: str) -> Principal | None:
        parts = split_key(token)
        if parts is None:
            return None
        key_id, secret = parts
        with self.db.session() as session:
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.secret_hash, _hash_secret(secret)):
                return None
            return Principal(id=row.id, kind="key", name=row.name, scopes=_scopes_of(row.scopes), limits=row.limits)

    def touch_key(self, key_id: str) -> None:
        with self.db.session() as session:
            session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))

    # users
    def create_user(self, username: str, password: str, scopes: frozenset[str] = ALL_SCOPES,
                    limits: dict[str, Any] | None = None) -> UserInfo:
        username = username.strip()
        if not username or len(username) > 100 or any(c.isspace() for c in username):
            raise BadRequest("a user name is 1-100 characters without spaces")
        if len(password) < 8:
            raise BadRequest("a password needs at least 8 characters")
        with self.db.session() as session:
            if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
                raise Conflict(f"user '{username}' exists already")
            row = User(username=username, password_hash=self._hasher().hash(password), scopes=scopes_text(scopes),
                       limits=limits, created_at=utcnow())
            session.add(row)
        return _user_info(row)

    def set_password(self, username: str, password: str) -> None:
        if len(password) < 8:
            raise BadRequest("a password needs at least 8 characters")
        with self.db.session() as session:
            row = session.scalar(sa.select(User).where(User.username == username))
            if row is None:
                raise NotFound(f"no user '{username}'")
            row.password_hash = self._hasher().hash(password)

    def list_users(self) -> list[UserInfo]:
        with self.db.session() as session:
            query = sa.select(User).where(User.disabled_at.is_(None)).order_by(User.username)
            return [_user_info(row) for row in session.scalars(query)]

    def delete_user(self, username: str) -> None:
        with self.db.session() as session:
            row = session.scalar(sa.select(User).where(User.username == username))
            if row is None:
                raise NotFound(f"no user '{username}'")
            session.delete(row)

    def verify_password(self, username: str, password: str) -> Principal | None:
        from argon2.exceptions import VerificationError

        hasher = self._hasher()
        with self.db.session() as session:
            row = session.scalar(sa.select(User).where(User.username == username, User.disabled_at.is_(None)))
            if row is None:
                if self._dummy_hash is None:
                    self._dummy_hash = hasher.hash(secrets.token_hex(16))
                with contextlib.suppress(VerificationError):
                    hasher.verify(self._dummy_hash, password)
                return None
            try:
                hasher.verify(row.password_hash, password)
            except VerificationError:
                return None
            if hasher.check_needs_rehash(row.password_hash):
                row.password_hash = hasher.hash(password)
            row.last_login_at = utcnow()
            return self._user_principal(row)

    def user_principal(self, username: str) -> Principal | None:
        with self.db.session() as session:
            row = session.scalar(sa.select(User).where(User.username == username, User.disabled_at.is_(None)))
            return None if row is None else self._user_principal(row)

    @staticmethod
    def _user_principal(row: User) -> Principal:
        return Principal(id=row.username, kind="user", name=row.username, scopes=_scopes_of(row.scopes),
                         limits=row.limits)

    # server
    def count_credentials(self) -> int:
        """Active keys plus users: whether anyone at all could sign in."""
        with self.db.session() as session:
            keys = session.scalar(sa.select(sa.func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None)))
            users = session.scalar(sa.select(sa.func.count()).select_from(User).where(User.disabled_at.is_(None)))
            return int(keys or 0) + int(users or 0)

    def signing_key(self) -> str:
        with self.db.session() as session:
            row = session.get(ServerSecret, _SIGNING_SECRET)
            if row is not None:
                return row.value
        try:
            with self.db.session() as session:
                session.add(ServerSecret(name=_SIGNING_SECRET, value=secrets.token_urlsafe(64), created_at=utcnow()))
        except sa.exc.IntegrityError:
            pass  # another process created it first: use theirs
        with self.db.session() as session:
            row = session.get(ServerSecret, _SIGNING_SECRET)
            assert row is not None
            return row.value


def _db_down(what: str) -> Busy:
    # 503, not 401: the credentials may well be fine, and the client should retry, not re-authenticate.
    return Busy(f"cannot {what} right now: the auth database is unreachable", retry_after=5)


# bind policy -----------------------------------------------------------------------------------
class InsecureBind(RuntimeError):
    """The server would be open to the network without credentials; the message says what to do."""


def anonymous_allowed(settings: Settings, credentials: int) -> bool:
    """Whether a request without credentials is let in (as the all-scopes anonymous principal).

    Raises InsecureBind when the configuration would expose the server on the network unprotected.
    """
    loopback = is_loopback(settings.host)
    mode = settings.auth
    if loopback:
        return mode in {"auto", "optional", "off"}
    if mode == "required" or (mode == "auto" and credentials > 0):
        if credentials == 0 and not settings.insecure:
            raise InsecureBind(_how_to_secure(settings, "auth is required but no API key or user exists"))
        return False
    if not settings.insecure:
        reason = ("no API key or user exists" if mode == "auto"
                  else f"DESKML_AUTH={mode} lets anyone on the network in")
        raise InsecureBind(_how_to_secure(settings, reason))
    return True


def _how_to_secure(settings: Settings, reason: str) -> str:
    return (
        f"refusing to listen on {settings.host} (reachable from other machines): {reason}.\n"
        "Create an API key first and give it to your apps:\n"
        "    deskml keys create --name phone\n"
        "or a user who signs in with a password (POST /login):\n"
        "    deskml users create alice\n"
        "To serve the network without any authentication anyway, add --insecure."
    )


# the async service the server uses -------------------------------------------------------------
class AuthService:
    def __init__(self, settings: Settings, store: CredentialStore, signing_key: str, allow_anonymous: bool) -> None:
        self.settings = settings
        self.store = store
        self.allow_anonymous = allow_anonymous
        self._signing_key = signing_key
        # token -> (principal, verified at): a hit skips the database; a stale entry still serves
        # while the database is unreachable, so a DB outage does not lock clients out.
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._touched: dict[str, float] = {}  # key id -> when last_used_at was last written
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (user name, exp)

    @classmethod
    def build(cls, settings: Settings, db: Database) -> AuthService:
        store = CredentialStore(db)
        allow = anonymous_allowed(settings, store.count_credentials())
        return cls(settings, store, store.signing_key(), allow)

    # verification
    async def authenticate(self, token: str) -> Principal:
        if token.startswith(KEY_PREFIX):
            principal = await self._cached(token, lambda: self.store.verify_key(token))
            if principal is None:
                raise Unauthorized("invalid or revoked API key")
            return principal
        username = self._verified_token(token)
        principal = await self._cached("user:" + username, lambda: self.store.user_principal(username))
        if principal is None:
            raise Unauthorized("the user of this token no longer exists")
        return principal

    def _verified_token(self, token: str) -> str:
        """The user name in a valid access token. A token whose signature was checked once is
        remembered until it expires, so each request costs a dict look-up, not an HMAC."""
        hit = self._tokens.get(token)
        if hit is not None and time.time() < hit[1]:
            return hit[0]
        claims = self.decode(token, "access")
        username = str(claims.get("sub", ""))
        if len(self._tokens) > 10000:
            self._tokens.clear()
        self._tokens[token] = (username, float(claims["exp"]))
        return username

    async def _cached(self, cache_key: str, lookup: Any) -> Principal | None:
        now = time.monotonic()
        hit = self._cache.get(cache_key)
        if hit is not None and now - hit[1] < self.settings.auth_cache_seconds:
            return hit[0]
        try:
            principal: Principal | None = await asyncio.to_thread(lookup)
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            if hit is not None:
                log.warning("auth database unreachable, trusting credentials verified %.0fs ago: %s",
                            now - hit[1], reason)
                return hit[0]
            log.error("auth database unreachable, cannot verify credentials: %s", reason)
            raise _db_down("verify credentials") from None
        if principal is None:
            self._cache.pop(cache_key, None)
            return None
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[cache_key] = (principal, now)
        if principal.kind == "key" and now - self._touched.get(principal.id, -TOUCH_EVERY_S) >= TOUCH_EVERY_S:
            self._touched[principal.id] = now
            self._spawn(self.store.touch_key, principal.id)
        return principal

    def _spawn(self, fn: Any, *args: Any) -> None:
        async def run() -> None:
            try:
                await asyncio.to_thread(fn, *args)
            except sa.exc.SQLAlchemyError as exc:
                log.debug("could not note key use: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def forget(self, key_id: str | None = None) -> None:
        """Drop cached verifications (all, or one key's) after a revoke through this process."""
        if key_id is None:
            self._cache.clear()
            return
        stale = [token for token, (principal, _) in self._cache.items()
                 if principal.kind == "key" and principal.id == key_id]
        for token in stale:
            del self._cache[token]

    def forget_user(self, username: str) -> None:
        self._cache.pop("user:" + username, None)

    # tokens
    def issue(self, principal: Principal) -> dict[str, Any]:
        import jwt

        now = int(time.time())
        common = {"iss": JWT_ISSUER, "sub": principal.id, "iat": now}
        access = {**common, "typ": "access", "exp": now + int(self.settings.jwt_expires),
                  "scopes": sorted(principal.scopes), "jti": uuid.uuid4().hex}
        refresh = {**common, "typ": "refresh", "exp": now + int(self.settings.jwt_refresh_expires),
                   "jti": uuid.uuid4().hex}
        return {
            "access_token": jwt.encode(access, self._signing_key, algorithm=JWT_ALGORITHM),
            "refresh_token": jwt.encode(refresh, self._signing_key, algorithm=JWT_ALGORITHM),
            "token_type": "bearer",
            "expires_in": int(self.settings.jwt_expires),
            "scopes": sorted(principal.scopes),
        }

    def decode(self, token: str, kind: str) -> dict[str, Any]:
        import jwt

        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._signing_key, algorithms=[JWT_ALGORITHM], issuer=JWT_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired: sign in again or use the refresh token") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid token") from None
        if claims.get("typ") != kind:
            raise Unauthorized(f"not an {kind} token" if kind == "access" else f"not a {kind} token")
        return claims

    async def login(self, username: str, password: str) -> dict[str, Any]:
        try:
            principal = await asyncio.to_thread(self.store.verify_password, username, password)
        except sa.exc.SQLAlchemyError:
            raise _db_down("sign in") from None
        if principal is None:
            raise Unauthorized("wrong user name or password")
        return self.issue(principal)

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        claims = self.decode(refresh_token, "refresh")
        username = str(claims["sub"])
        try:
            principal = await asyncio.to_thread(self.store.user_principal, username)
        except sa.exc.SQLAlchemyError:
            raise _db_down("refresh tokens") from None
        if principal is None:
            raise Unauthorized("the user of this token no longer exists")
        return self.issue(principal)

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

