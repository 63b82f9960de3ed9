"""Bearer tokens: minting, hashing, looking up who a token is, and the first admin token."""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edgeloop.fleet import db
from edgeloop.model.rbac import Role

TOKEN_PREFIX = "elt_"  # noqa: S105 (a prefix that makes leaked tokens easy to scan for)


def new_secret() -> str:
    """A fresh random token (256 bits); shown once, never stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(secret: str) -> str:
    """The SHA-256 hex digest under which a token is stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's id, project, display name, role and (for agents) its site."""

    token_id: str
    project: str
    name: str
    role: Role
    site: str | None = None


class TokenRefused(Exception):
    """The bearer token is missing, unknown, expired, revoked or already used (HTTP 401)."""


class Authenticator:
    """Resolves bearer tokens to principals, caching hits briefly to spare the database.

    A revocation made through this process takes effect at once; one made through another
    replica takes effect within `cache_seconds`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, Principal, float | None]] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str | None) -> Principal | None:
        """The principal of `secret` if it is cached and still valid, without any I/O."""
        if not secret:
            return None
        hit = self._cache.get(hash_token(secret))
        now = self.clock()
        if hit and hit[0] > now and (hit[2] is None or hit[2] > now):
            return hit[1]
        return None

    def authenticate(self, secret: str | None) -> Principal:
        """The principal of `secret`; raises TokenRefused with a reason a person can act on."""
        if not secret:
            raise TokenRefused("no bearer token; send 'Authorization: Bearer <token>'")
        digest = hash_token(secret)
        now = self.clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit and hit[0] > now and (hit[2] is None or hit[2] > now):
            return hit[1]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.tokens).where(db.tokens.c.hash == digest)).first()
        if row is None:
            raise TokenRefused("unknown token; ask an admin for a new one")
        if row.revoked_at is not None:
            raise TokenRefused(f"token {row.id} was revoked; ask an admin for a new one")
        if row.expires_at is not None and row.expires_at <= now:
            raise TokenRefused(f"token {row.id} has expired; ask an admin for a new one")
        if row.role == Role.JOIN and row.used_at is not None:
            raise TokenRefused(f"join token {row.id} was already used; create a new one")
        principal = Principal(row.id, row.project, row.name, Role(row.role), row.site)
        if row.role != Role.JOIN:  # join tokens are one-time: always check the database
            with self._lock:
                self._cache[digest] = (now + self.cache_seconds, principal, row.expires_at)
        return principal

    def refresh(self) -> int:
        """Re-check every cached token against the database in a few queries and extend the
        entries still valid; drops revoked, expired and deleted ones. Returns how many stay.

        Run every `cache_seconds / 2`, it keeps the tokens in use out of the request path's
        database lookups while a revocation through another replica still takes effect within
        `cache_seconds`.
        """
        with self._lock:
            digests = list(self._cache)
        now = self.clock()
        valid: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(digests), 500):
                rows = conn.execute(
                    sa.select(
                        db.tokens.c.hash, db.tokens.c.revoked_at, db.tokens.c.expires_at
                    ).where(db.tokens.c.hash.in_(digests[i : i + 500]))
                )
                valid.update(
                    r.hash
                    for r in rows
                    if r.revoked_at is None and (r.expires_at is None or r.expires_at > now)
                )
        with self._lock:
            for digest in digests:
                hit = self._cache.get(digest)
                if hit is None:  # forgotten meanwhile (revoked through this process)
                    continue
                if digest in valid:
                    self._cache[digest] = (now + self.cache_seconds, hit[1], hit[2])
                else:
                    del self._cache[digest]
        return len(valid)

    def forget(self, token_id: str | None = None) -> None:
        """Drop cached principals (of one token, or all) after a revocation."""
        with self._lock:
            if token_id is None:
                self._cache.clear()
            else:
                self._cache = {k: v for k, v in self._cache.items() if v[1].token_id != token_id}


def write_secret_file(path: Path, secret: str) -> None:
    """Write a token to `path`, readable by its owner only (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secret + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


def read_secret_file(path: Path) -> str:
    """Read a token file, refusing one that others can read (it would be a leaked token)."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise PermissionError(
            f"{path} is readable by others (mode {oct(mode & 0o777)}); run `chmod 600 {path}`"
        )
    return path.read_text(encoding="utf-8").strip()
