"""The token cache: a periodic refresh keeps tokens in use cached and still drops, within
`token_cache_seconds`, one revoked through another replica (straight in the database)."""

from __future__ import annotations

import sqlalchemy as sa

from edgeloop.fleet import db
from edgeloop.fleet.auth import hash_token
from edgeloop.testing.fleet import Fleet


def test_refresh_extends_valid_tokens_and_drops_revoked_ones(fleet: Fleet) -> None:
    auth = fleet.plane.auth
    auth.cache_seconds = 30
    kept, revoked = fleet.join("edge-a"), fleet.join("edge-b")
    for token in (kept, revoked):
        assert fleet.call("GET", "/api/v1/whoami", token).status_code == 200
        assert auth.cached(token) is not None
    fleet.clock.advance(20)
    with fleet.plane.engine.begin() as conn:  # another replica revokes edge-b's token
        conn.execute(
            sa.update(db.tokens)
            .where(db.tokens.c.hash == hash_token(revoked))
            .values(revoked_at=fleet.clock.now)
        )
    assert auth.cached(revoked) is not None, "not seen before the refresh"
    assert auth.refresh() == 1
    assert auth.cached(revoked) is None
    assert fleet.call("GET", "/api/v1/whoami", revoked).status_code == 401
    fleet.clock.advance(20)  # 40 s after it was first cached: the refresh extended it
    assert auth.cached(kept) is not None
    fleet.clock.advance(15)  # no refresh for 35 s: the entry expires as before
    assert auth.cached(kept) is None
    assert fleet.call("GET", "/api/v1/whoami", kept).status_code == 200


def test_refresh_drops_expired_tokens(sqlite_fleet: Fleet) -> None:
    fleet = sqlite_fleet
    auth = fleet.plane.auth
    auth.cache_seconds = 30
    short = fleet.token("viewer", "vera", expires_in=40)
    assert fleet.call("GET", "/api/v1/whoami", short).status_code == 200
    fleet.clock.advance(25)
    valid = auth.refresh()  # the viewer's and the admin's tokens
    assert auth.cached(short) is not None
    fleet.clock.advance(20)  # past its expiry, though the entry was extended
    assert auth.cached(short) is None
    assert auth.refresh() == valid - 1
    assert fleet.call("GET", "/api/v1/whoami", short).status_code == 401
