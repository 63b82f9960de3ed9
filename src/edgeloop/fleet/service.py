"""The control plane's operations over its database: tokens, sites, deployments, rollouts, audit.

Every method takes the calling Principal (already authorized by the app for the route) and
stays inside that principal's project. Rules live in edgeloop.model; this module applies them.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from edgeloop.errors import FleetConflict, FleetError, FleetNotFound
from edgeloop.fleet import db
from edgeloop.fleet.auth import (
    Principal,
    hash_token,
    new_secret,
    new_token_id,
    write_secret_file,
)
from edgeloop.fleet.signing import DesiredPublisher, Signer, public_pem
from edgeloop.journal.base import EventSink
from edgeloop.model.desired import (
    Deployment,
    RolloutView,
    desired_document,
    desired_models,
    etag_of,
)
from edgeloop.model.events import Event
from edgeloop.model.rbac import PERSON_ROLES, Role
from edgeloop.model.rollout import (
    Gate,
    GateOutcome,
    RolloutState,
    Selector,
    SiteHealth,
    WaveSpec,
    evaluate_gate,
    plan_waves,
    transition,
)

log = logging.getLogger(__name__)

ACTIVE = (RolloutState.RUNNING.value, RolloutState.PAUSED.value)
_UNKNOWN = object()
_ACTION_EVENTS = {
    "pause": "paused",
    "resume": "resumed",
    "abort": "aborted",
    "rollback": "rolled_back",
}


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


class FleetService:
    """All control-plane state changes; safe to call from many threads of one process."""

    def __init__(
        self,
        engine: Engine,
        *,
        signer: Signer,
        events: EventSink | None = None,
        publisher: DesiredPublisher | None = None,
        clock: Callable[[], float] = time.time,
        on_desired_changed: Callable[[str, str], None] | None = None,
        core_site: str = "core",
        resolve_alias: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.events = events
        self.publisher = publisher
        self.clock = clock
        self.on_desired_changed = on_desired_changed
        self.core_site = core_site
        self.resolve_alias = resolve_alias
        # SQLite has one writer: serialize writers here rather than retry SQLITE_BUSY.
        self._write_lock = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        # Heartbeats waiting for the next flush, and the desired-state ETags last seen, so a
        # heartbeat can be answered without touching the database.
        self._pending: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self._pending_lock = threading.Lock()
        self._etags: dict[tuple[str, str], str | None] = {}
        self._epochs: dict[tuple[str, str], int] = {}
        self._etag_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _emit(self, events: Iterable[Event]) -> None:
        if self.events is None:
            return
        for event in events:
            try:
                self.events.emit(event)
            except FleetError:
                raise
            except Exception:  # the journal must not take the control plane down with it
                log.exception("could not journal event %s", event.id)

    def _event(self, type_: str, subject: str, data: dict[str, Any], key: str) -> Event:
        return Event(type=type_, site=self.core_site, subject=subject, data=data, id=key)

    # -- projects and tokens ----------------------------------------------------------------

    def ensure_project(self, name: str) -> None:
        with self._write() as conn:
            exists = conn.execute(
                sa.select(db.projects.c.name).where(db.projects.c.name == name)
            ).first()
            if not exists:
                conn.execute(sa.insert(db.projects).values(name=name, created_at=self.clock()))

    def bootstrap_admin(self, project: str, token_file: Path) -> bool:
        """Mint the first admin token of `project` into `token_file` (0600) if it has none."""
        self.ensure_project(project)
        with self._write() as conn:
            has_admin = conn.execute(
                sa.select(db.tokens.c.id).where(
                    db.tokens.c.project == project,
                    db.tokens.c.role == Role.ADMIN.value,
                    db.tokens.c.revoked_at.is_(None),
                )
            ).first()
            if has_admin:
                return False
            secret = self._insert_token(conn, project, "bootstrap-admin", Role.ADMIN, None, None)
            # Write the file inside the transaction: if it fails, no unreachable admin exists.
            write_secret_file(token_file, secret)
        return True

    def _insert_token(
        self,
        conn: Connection,
        project: str,
        name: str,
        role: Role,
        site: str | None,
        expires_in: float | None,
        *,
        labels: Mapping[str, str] | None = None,
        created_by: str | None = None,
    ) -> str:
        secret = new_secret()
        now = self.clock()
        conn.execute(
            sa.insert(db.tokens).values(
                id=new_token_id(),
                project=project,
                name=name,
                role=role.value,
                site=site,
                hash=hash_token(secret),
                labels=dict(labels) if labels is not None else None,
                created_at=now,
                created_by=created_by,
                expires_at=now + expires_in if expires_in else None,
            )
        )
        return secret

    def create_project(self, who: Principal, name: str) -> str:
        """Create a project (tenant) and return the secret of its first admin token."""
        with self._write() as conn:
            if conn.execute(sa.select(db.projects).where(db.projects.c.name == name)).first():
                raise FleetConflict(f"project {name!r} already exists")
            conn.execute(sa.insert(db.projects).values(name=name, created_at=self.clock()))
            return self._insert_token(
                conn, name, f"{name}-admin", Role.ADMIN, None, None, created_by=who.token_id
            )

    def list_projects(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(sa.select(db.projects).order_by("name"))]

    def create_token(
        self, who: Principal, name: str, role: Role, expires_in: float | None
    ) -> tuple[str, dict[str, Any]]:
        """Mint a token for a person; agent and join tokens come from their own routes."""
        if role not in PERSON_ROLES:
            raise FleetError(
                f"role {role.value!r} cannot be minted here; roles: "
                f"{', '.join(sorted(r.value for r in PERSON_ROLES))} (agents get theirs by joining)"
            )
        with self._write() as conn:
            secret = self._insert_token(
                conn, who.project, name, role, None, expires_in, created_by=who.token_id
            )
            row = conn.execute(
                sa.select(db.tokens).where(db.tokens.c.hash == hash_token(secret))
            ).one()
        return secret, _public_token(_row(row))

    def list_tokens(self, who: Principal) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.tokens)
                .where(db.tokens.c.project == who.project)
                .order_by(db.tokens.c.created_at)
            )
            return [_public_token(_row(r)) for r in rows]

    def revoke_token(self, who: Principal, token_id: str) -> dict[str, Any]:
        with self._write() as conn:
            row = conn.execute(
                sa.select(db.tokens).where(
                    db.tokens.c.id == token_id, db.tokens.c.project == who.project
                )
            ).first()
            if row is None:
                raise FleetNotFound(f"no token {token_id!r}; see `edgeloop tokens ls`")
            if row.revoked_at is None:
                conn.execute(
                    sa.update(db.tokens)
                    .where(db.tokens.c.id == token_id)
                    .values(revoked_at=self.clock())
                )
        return {"id": token_id, "revoked": True}

    # -- sites ------------------------------------------------------------------------------

    def create_join_token(
        self, who: Principal, site: str, labels: Mapping[str, str], expires_in: float
    ) -> str:
        with self._write() as conn:
            return self._insert_token(
                conn,
                who.project,
                f"join:{site}",
                Role.JOIN,
                site,
                expires_in,
                labels=labels,
                created_by=who.token_id,
            )

    def join(self, who: Principal, client: str | None) -> dict[str, Any]:
        """Trade a one-time join token for the site's agent token; registers the site."""
        assert who.site is not None
        now = self.clock()
        with self._write() as conn:
            used = conn.execute(
                sa.update(db.tokens)
                .where(db.tokens.c.id == who.token_id, db.tokens.c.used_at.is_(None))
                .values(used_at=now)
            )
            if used.rowcount != 1:
                raise FleetConflict("this join token was already used; create a new one")
            labels = (
                conn.execute(
                    sa.select(db.tokens.c.labels).where(db.tokens.c.id == who.token_id)
                ).scalar_one()
                or {}
            )
            # Re-joining replaces the site's agent token: an old, possibly leaked one stops.
            conn.execute(
                sa.update(db.tokens)
                .where(
                    db.tokens.c.project == who.project,
                    db.tokens.c.site == who.site,
                    db.tokens.c.role == Role.AGENT.value,
                    db.tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
            secret = self._insert_token(
                conn,
                who.project,
                f"agent:{who.site}",
                Role.AGENT,
                who.site,
                None,
                created_by=who.token_id,
            )
            existing = conn.execute(
                sa.select(db.sites.c.name).where(
                    db.sites.c.project == who.project, db.sites.c.name == who.site
                )
            ).first()
            if existing:
                conn.execute(
                    sa.update(db.sites)
                    .where(db.sites.c.project == who.project, db.sites.c.name == who.site)
                    .values(labels=labels)
                )
            else:
                conn.execute(
                    sa.insert(db.sites).values(
                        project=who.project,
                        name=who.site,
                        labels=labels,
                        joined_at=now,
                        status={},
                    )
                )
            envelopes = self._refresh_desired(conn, who.project, [who.site])
        self._after_desired(who.project, envelopes)
        self._emit(
            [
                self._event(
                    "site.joined",
                    who.site,
                    {"labels": labels, "client": client},
                    f"site.joined:{who.project}:{who.site}:{who.token_id}",
                )
            ]
        )
        return {
            "site": who.site,
            "project": who.project,
            "token": secret,
            "labels": labels,
            "signing_key": public_pem(self.signer.key),
        }

    def list_sites(self, who: Principal, selector: str = "") -> list[dict[str, Any]]:
        match = Selector.parse(selector)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.sites).where(db.sites.c.project == who.project).order_by("name")
            )
            return [_site_view(_row(r)) for r in rows if match.matches(r.labels)]

    def get_site(self, who: Principal, site: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = self._site_row(conn, who.project, site)
            view = _site_view(_row(row))
            d = conn.execute(
                sa.select(db.desired.c.etag, db.desired.c.generation).where(
                    db.desired.c.project == who.project, db.desired.c.site == site
                )
            ).first()
            view["desired_etag"] = d.etag if d else None
            view["desired_generation"] = d.generation if d else None
        return view

    def _site_row(self, conn: Connection, project: str, site: str) -> Any:
        row = conn.execute(
            sa.select(db.sites).where(db.sites.c.project == project, db.sites.c.name == site)
        ).first()
        if row is None:
            raise FleetNotFound(
                f"no site {site!r} in project {project!r}; see `edgeloop fleet sites`"
            )
        return row

    def set_labels(self, who: Principal, site: str, labels: Mapping[str, str]) -> dict[str, Any]:
        with self._write() as conn:
            self._site_row(conn, who.project, site)
            conn.execute(
                sa.update(db.sites)
                .where(db.sites.c.project == who.project, db.sites.c.name == site)
                .values(labels=dict(labels))
            )
            envelopes = self._refresh_desired(conn, who.project, [site])
        self._after_desired(who.project, envelopes)
        self._emit(
            [
                self._event(
                    "site.labels",
                    site,
                    {"labels": dict(labels)},
                    f"site.labels:{who.project}:{site}:{secrets.token_hex(6)}",
                )
            ]
        )
        return self.get_site(who, site)

    def remove_site(self, who: Principal, site: str) -> dict[str, Any]:
        now = self.clock()
        with self._write() as conn:
            self._site_row(conn, who.project, site)
            conn.execute(
                sa.delete(db.sites).where(
                    db.sites.c.project == who.project, db.sites.c.name == site
                )
            )
            conn.execute(
                sa.delete(db.desired).where(
                    db.desired.c.project == who.project, db.desired.c.site == site
                )
            )
            conn.execute(
                sa.update(db.tokens)
                .where(
                    db.tokens.c.project == who.project,
                    db.tokens.c.site == site,
                    db.tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
        self._emit(
            [self._event("site.removed", site, {}, f"site.removed:{who.project}:{site}:{now}")]
        )
        return {"site": site, "removed": True}

    def heartbeat(self, who: Principal, site: str, status: dict[str, Any]) -> dict[str, Any]:
        """Record a site's status at once; returns the ETag of its current desired state."""
        found = self.apply_heartbeats([(who.project, site, status, self.clock())])
        if not found:
            raise FleetNotFound(f"site {site!r} is not registered; join it again")
        return {"desired_etag": self._etags.get((who.project, site))}

    def queue_heartbeat(
        self, who: Principal, site: str, status: dict[str, Any], *, only_if_known: bool = False
    ) -> tuple[bool, str | None]:
        """Buffer a heartbeat for the next flush (no I/O); returns (etag known, etag).

        With `only_if_known`, a heartbeat whose site's ETag is not in memory is not buffered:
        the caller hands it to the route that reads the ETag from the database.
        """
        key = (who.project, site)
        etag = self._etags.get(key, _UNKNOWN)
        if etag is _UNKNOWN and only_if_known:
            return (False, None)
        with self._pending_lock:
            self._pending[key] = (status, self.clock())
        return (etag is not _UNKNOWN, None if etag is _UNKNOWN else str(etag))

    def cached_etag(self, project: str, site: str) -> str | None:
        """The ETag of a site's desired state as last seen by this process, or None."""
        etag = self._etags.get((project, site), _UNKNOWN)
        return None if etag is _UNKNOWN else etag  # type: ignore[return-value]

    def _remember_etag(self, key: tuple[str, str], etag: str | None, epoch: int) -> None:
        # Only when no change was made since the value was read: a read that raced with a
        # change must not put the old ETag back into the cache. The lock makes the check and
        # the write one step, so a change cannot land between them.
        with self._etag_lock:
            if self._epochs.get(key, 0) == epoch:
                self._etags[key] = etag

    def desired_etag(self, project: str, site: str) -> str | None:
        """The ETag of a site's desired state, read from the database (and cached)."""
        key = (project, site)
        epoch = self._epochs.get(key, 0)
        with self.engine.connect() as conn:
            etag = conn.execute(
                sa.select(db.desired.c.etag).where(
                    db.desired.c.project == project, db.desired.c.site == site
                )
            ).scalar()
        self._remember_etag(key, etag, epoch)
        return etag

    def flush_heartbeats(self) -> int:
        """Write every buffered heartbeat in one transaction; returns how many.

        If the write fails, the heartbeats go back into the buffer (unless a newer one of
        the same site arrived meanwhile) for the next flush: an acknowledged heartbeat is
        written late rather than lost.
        """
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            self.apply_heartbeats([(p, s, st, t) for (p, s), (st, t) in pending.items()])
        except Exception:
            with self._pending_lock:
                for key, beat in pending.items():
                    self._pending.setdefault(key, beat)
            raise
        return len(pending)

    def apply_heartbeats(
        self, items: list[tuple[str, str, dict[str, Any], float]]
    ) -> set[tuple[str, str]]:
        """Write heartbeats (project, site, status, time); returns the sites that exist."""
        by_project: dict[str, dict[str, tuple[dict[str, Any], float]]] = {}
        for project, site, status, when in items:
            by_project.setdefault(project, {})[site] = (status, when)
        found: set[tuple[str, str]] = set()
        events: list[Event] = []
        update = (
            sa.update(db.sites)
            .where(db.sites.c.project == sa.bindparam("b_project"))
            .where(db.sites.c.name == sa.bindparam("b_name"))
            .values(
                last_seen=sa.bindparam("b_last_seen"),
                healthy=sa.bindparam("b_healthy"),
                healthy_since=sa.bindparam("b_since"),
                status=sa.bindparam("b_status", type_=db.sites.c.status.type),
            )
        )
        epochs = dict(self._epochs)
        with self._write() as conn:
            for project, beats in by_project.items():
                names = list(beats)
                for chunk in (names[i : i + 500] for i in range(0, len(names), 500)):
                    rows = conn.execute(
                        sa.select(
                            db.sites.c.name,
                            db.sites.c.healthy,
                            db.sites.c.healthy_since,
                            db.sites.c.status,
                        ).where(db.sites.c.project == project, db.sites.c.name.in_(chunk))
                    ).all()
                    params = []
                    for row in rows:
                        status, when = beats[row.name]
                        healthy = bool(status.get("healthy", True))
                        same = (row.status or {}).get("loaded") == status.get("loaded")
                        # "Healthy since" restarts whenever the loaded versions change: a
                        # gate's hold time counts from the swap, not from before it.
                        keep = bool(row.healthy) and same
                        since = (row.healthy_since if keep else when) if healthy else None
                        params.append(
                            {
                                "b_project": project,
                                "b_name": row.name,
                                "b_last_seen": when,
                                "b_healthy": healthy,
                                "b_since": since,
                                "b_status": status,
                            }
                        )
                        found.add((project, row.name))
                        if row.healthy is not None and bool(row.healthy) != healthy:
                            kind = "site.healthy" if healthy else "site.unhealthy"
                            events.append(
                                self._event(
                                    kind,
                                    row.name,
                                    {"status": status},
                                    f"{kind}:{project}:{row.name}:{when:.6f}",
                                )
                            )
                    if params:
                        conn.execute(update, params)
                    for site, etag in conn.execute(
                        sa.select(db.desired.c.site, db.desired.c.etag).where(
                            db.desired.c.project == project, db.desired.c.site.in_(chunk)
                        )
                    ):
                        self._remember_etag((project, site), etag, epochs.get((project, site), 0))
        self._emit(events)
        return found

    def report(self, who: Principal, site: str, report: dict[str, Any]) -> dict[str, Any]:
        """An agent's outcome of applying its desired state; a failure feeds the rollout gate."""
        now = self.clock()
        outcome = report.get("outcome")
        with self._write() as conn:
            self._site_row(conn, who.project, site)
            if outcome == "failed":
                active = conn.execute(
                    sa.select(db.rollouts.c.id)
                    .join(db.rollout_sites, db.rollout_sites.c.rollout_id == db.rollouts.c.id)
                    .where(
                        db.rollouts.c.project == who.project,
                        db.rollouts.c.state.in_(ACTIVE),
                        db.rollouts.c.model == report.get("model"),
                        db.rollouts.c.to_version == report.get("version"),
                        db.rollout_sites.c.site == site,
                    )
                ).scalars()
                for rollout_id in active:
                    conn.execute(
                        sa.update(db.rollout_sites)
                        .where(
                            db.rollout_sites.c.rollout_id == rollout_id,
                            db.rollout_sites.c.site == site,
                        )
                        .values(problem=str(report.get("message") or "apply failed")[:2000])
                    )
        if outcome in ("failed", "rolled_back", "alert"):
            # An agent re-sends a report it could not confirm; with its generation the event
            # id is the same, so the journal keeps one.
            generation = report.get("generation")
            tail = (
                f"{report.get('model')}:{report.get('version')}:{generation}"
                if generation is not None
                else f"{now}"
            )
            self._emit(
                [
                    self._event(
                        f"site.{outcome}",
                        site,
                        report,
                        f"site.{outcome}:{who.project}:{site}:{tail}",
                    )
                ]
            )
        return {"recorded": True}

    # -- desired state ----------------------------------------------------------------------

    def get_desired(self, who: Principal, site: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(db.desired).where(
                    db.desired.c.project == who.project, db.desired.c.site == site
                )
            ).first()
            if row is None:
                self._site_row(conn, who.project, site)
                return None
            return _row(row)

    def _refresh_desired(
        self, conn: Connection, project: str, only: Iterable[str] | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Recompute desired state of sites (all, or `only`); returns the changed envelopes."""
        deps = [
            Deployment(r.name, r.model, r.version, r.selector)
            for r in conn.execute(
                sa.select(db.deployments).where(db.deployments.c.project == project)
            )
        ]
        latest: dict[str, RolloutView] = {}
        for r in conn.execute(
            sa.select(db.rollouts)
            .where(db.rollouts.c.project == project)
            .order_by(db.rollouts.c.created_at)
        ):
            latest[r.deployment] = _rollout_view(r)
        wanted = None if only is None else sorted(set(only))
        if wanted is not None and not wanted:
            return []
        site_rows: list[Any] = []
        stored: dict[str, Any] = {}
        # Only the sites asked for are read (in chunks), so one join stays O(1), not O(fleet).
        chunks = (
            [None] if wanted is None else [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
        )
        for chunk in chunks:
            sites_q = sa.select(db.sites.c.name, db.sites.c.labels).where(
                db.sites.c.project == project
            )
            desired_q = sa.select(
                db.desired.c.site, db.desired.c.generation, db.desired.c.document
            ).where(db.desired.c.project == project)
            if chunk is not None:
                sites_q = sites_q.where(db.sites.c.name.in_(chunk))
                desired_q = desired_q.where(db.desired.c.site.in_(chunk))
            site_rows.extend(conn.execute(sites_q))
            stored.update({r.site: r for r in conn.execute(desired_q)})
        changed = []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        now = self.clock()
        for site in site_rows:
            models = desired_models(site.name, site.labels, deps, latest)
            content = desired_document(site.name, models)
            old = stored.get(site.name)
            if old is not None and old.document.get("models") == content["models"]:
                continue
            generation = (old.generation if old else 0) + 1
            document = {**content, "project": project, "generation": generation, "issued_at": now}
            envelope = self.signer.envelope(document)
            values = {
                "generation": generation,
                "etag": etag_of(document),
                "document": document,
                "signature": envelope["signature"],
                "updated_at": now,
            }
            if old is None:
                inserts.append({"project": project, "site": site.name, **values})
            else:
                updates.append({"b_project": project, "b_site": site.name, **values})
            changed.append((site.name, envelope))
        # One batched statement each: a deployment touching thousands of sites is one round
        # trip per kind, not one per site.
        if inserts:
            conn.execute(sa.insert(db.desired), inserts)
        if updates:
            conn.execute(
                sa.update(db.desired)
                .where(db.desired.c.project == sa.bindparam("b_project"))
                .where(db.desired.c.site == sa.bindparam("b_site")),
                updates,
            )
        return changed

    def resign_if_key_changed(self) -> int:
        """Re-sign every stored desired state when it was signed by another key (the signing
        key changed, e.g. to the workspace's); returns how many were re-signed."""
        with self.engine.connect() as conn:
            first = conn.execute(
                sa.select(db.desired.c.document, db.desired.c.signature).limit(1)
            ).first()
        if first is None or self.signer.verifies(first.document, first.signature):
            return 0
        changed: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        with self._write() as conn:
            rows = conn.execute(
                sa.select(db.desired.c.project, db.desired.c.site, db.desired.c.document)
            ).all()
            for row in rows:
                envelope = self.signer.envelope(row.document)
                conn.execute(
                    sa.update(db.desired)
                    .where(db.desired.c.project == row.project, db.desired.c.site == row.site)
                    .values(signature=envelope["signature"])
                )
                changed.setdefault(row.project, []).append((row.site, envelope))
        for project, envelopes in changed.items():
            self._after_desired(project, envelopes)
        log.warning("re-signed %d desired-state documents with the current key", len(rows))
        return len(rows)

    def _after_desired(self, project: str, envelopes: list[tuple[str, dict[str, Any]]]) -> None:
        for site, envelope in envelopes:
            key = (project, site)
            with self._etag_lock:
                self._epochs[key] = self._epochs.get(key, 0) + 1
                self._etags.pop(key, None)  # re-read on the next heartbeat
            if self.publisher is not None:
                try:
                    self.publisher.publish(site, envelope)
                except Exception:  # the API still serves it; the store copy is a fallback
                    log.exception("could not publish desired state of %s", site)
            if self.on_desired_changed is not None:
                self.on_desired_changed(project, site)

    # -- deployments ------------------------------------------------------------------------

    def list_deployments(self, who: Principal) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.deployments)
                .where(db.deployments.c.project == who.project)
                .order_by("name")
            )
            return [_row(r) for r in rows]

    def put_deployment(
        self,
        who: Principal,
        name: str,
        model: str,
        version: str | None,
        selector: str,
        *,
        alias: str | None = None,
        policy: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or change a deployment at once (no waves; use a rollout for waves).

        With `alias` the version is the one the registry's alias names now; later moves of
        the alias start rollouts with `policy` ({"waves": ..., "gate": {...}}).
        """
        Selector.parse(selector)
        if alias is not None:
            version = self._resolve(model, alias)
        if version is None:
            raise FleetError("a deployment names a version or an alias")
        with self._write() as conn:
            self._refuse_if_active(conn, who.project, name)
            values = {
                "model": model,
                "version": version,
                "selector": selector,
                "updated_at": self.clock(),
                "alias": alias,
                "policy": policy if alias is not None else None,
            }
            found = conn.execute(
                sa.select(db.deployments.c.name).where(
                    db.deployments.c.project == who.project, db.deployments.c.name == name
                )
            ).first()
            if found:
                conn.execute(
                    sa.update(db.deployments)
                    .where(db.deployments.c.project == who.project, db.deployments.c.name == name)
                    .values(**values)
                )
            else:
                conn.execute(
                    sa.insert(db.deployments).values(project=who.project, name=name, **values)
                )
            envelopes = self._refresh_desired(conn, who.project)
        self._after_desired(who.project, envelopes)
        return {"name": name, **values, "sites_changed": len(envelopes)}

    def delete_deployment(self, who: Principal, name: str) -> dict[str, Any]:
        with self._write() as conn:
            self._refuse_if_active(conn, who.project, name)
            gone = conn.execute(
                sa.delete(db.deployments).where(
                    db.deployments.c.project == who.project, db.deployments.c.name == name
                )
            )
            if gone.rowcount == 0:
                raise FleetNotFound(f"no deployment {name!r}; see `edgeloop fleet deploy --help`")
            envelopes = self._refresh_desired(conn, who.project)
        self._after_desired(who.project, envelopes)
        return {"name": name, "deleted": True}

    def _resolve(self, model: str, alias: str) -> str:
        if self.resolve_alias is None:
            raise FleetError(
                "this control plane has no model registry to resolve aliases; deploy a version, "
                "or run it with `edgeloop core` in the workspace"
            )
        version = self.resolve_alias(model, alias)
        if version is None:
            raise FleetNotFound(
                f"model {model!r} has no alias {alias!r} in the registry; "
                f"promote a version first (`edgeloop models promote {model} VERSION`)"
            )
        return version

    def follow_aliases(self) -> list[str]:
        """Start a rollout for each deployment whose alias moved to a version not yet tried
        there (a version whose rollout completed may come back).

        A version whose rollout was rolled back or aborted is not tried again by itself:
        promote another version, or start a rollout by hand.
        """
        if self.resolve_alias is None:
            return []
        with self.engine.connect() as conn:
            deps = conn.execute(
                sa.select(db.deployments).where(db.deployments.c.alias.is_not(None))
            ).all()
            # Versions not to start by themselves: rolled back, aborted, or under way. A
            # completed one may come back (the alias moved on, then back to it).
            tried = {
                (r.project, r.deployment, r.to_version)
                for r in conn.execute(
                    sa.select(
                        db.rollouts.c.project, db.rollouts.c.deployment, db.rollouts.c.to_version
                    ).where(db.rollouts.c.state != RolloutState.COMPLETED.value)
                )
            }
        notes = []
        for dep in deps:
            try:
                version = self.resolve_alias(dep.model, dep.alias)
            except Exception:  # the registry being away must not stop gates
                log.exception("could not resolve %s@%s", dep.model, dep.alias)
                continue
            if version is None or version == dep.version:
                continue
            if (dep.project, dep.name, version) in tried:
                continue
            policy = dep.policy or {}
            who = Principal(
                token_id="", project=dep.project, name=f"alias:{dep.alias}", role=Role.OPERATOR
            )
            gate = Gate(**(policy.get("gate") or {}))
            try:
                result = self.start_rollout(
                    who, dep.name, version, WaveSpec.parse(policy.get("waves") or "5,25,100"), gate
                )
            except FleetConflict:
                continue  # a rollout is running; the alias is looked at again next tick
            notes.append(
                f"{dep.model}@{dep.alias} -> {version}: rollout {result['id']} of {dep.name}"
            )
        return notes

    def _refuse_if_active(self, conn: Connection, project: str, deployment: str) -> None:
        active = conn.execute(
            sa.select(db.rollouts.c.id).where(
                db.rollouts.c.project == project,
                db.rollouts.c.deployment == deployment,
                db.rollouts.c.state.in_(ACTIVE),
            )
        ).scalar()
        if active:
            raise FleetConflict(
                f"rollout {active} of deployment {deployment!r} is in progress; "
                f"abort or finish it first (`edgeloop fleet rollout abort {active}`)"
            )

    # -- rollouts ---------------------------------------------------------------------------

    def start_rollout(
        self, who: Principal, deployment: str, version: str, waves: WaveSpec, gate: Gate
    ) -> dict[str, Any]:
        rollout_id = "ro_" + secrets.token_hex(6)
        now = self.clock()
        with self._write() as conn:
            dep = conn.execute(
                sa.select(db.deployments).where(
                    db.deployments.c.project == who.project, db.deployments.c.name == deployment
                )
            ).first()
            if dep is None:
                raise FleetNotFound(
                    f"no deployment {deployment!r}; create it with `edgeloop fleet deploy`"
                )
            self._refuse_if_active(conn, who.project, deployment)
            if dep.version == version:
                raise FleetConflict(f"deployment {deployment!r} already runs version {version}")
            match = Selector.parse(dep.selector)
            selected = {
                r.name: r.labels
                for r in conn.execute(
                    sa.select(db.sites.c.name, db.sites.c.labels).where(
                        db.sites.c.project == who.project
                    )
                )
                if match.matches(r.labels)
            }
            plan = plan_waves(selected, waves, rollout_id=rollout_id)
            state = RolloutState.RUNNING if plan else RolloutState.COMPLETED
            conn.execute(
                sa.insert(db.rollouts).values(
                    id=rollout_id,
                    project=who.project,
                    deployment=deployment,
                    model=dep.model,
                    from_version=dep.version,
                    to_version=version,
                    state=state.value,
                    waves=plan,
                    current_wave=0,
                    wave_started_at=now,
                    gate=asdict(gate),
                    reason="" if plan else "no site matches the deployment's selector",
                    created_at=now,
                    updated_at=now,
                    created_by=who.name,
                )
            )
            if plan:
                conn.execute(
                    sa.insert(db.rollout_sites),
                    [
                        {"rollout_id": rollout_id, "site": s, "wave": i, "problem": None}
                        for i, wave in enumerate(plan)
                        for s in wave
                    ],
                )
            else:
                self._set_deployment_version(conn, who.project, deployment, version)
            envelopes = self._refresh_desired(conn, who.project, plan[0] if plan else [])
        self._after_desired(who.project, envelopes)
        data = {
            "deployment": deployment,
            "from": dep.version,
            "to": version,
            "waves": [len(w) for w in plan],
        }
        events = [self._event("rollout.started", rollout_id, data, f"{rollout_id}:started")]
        if plan:
            events.append(
                self._event(
                    "rollout.wave",
                    rollout_id,
                    {"wave": 0, "sites": len(plan[0])},
                    f"{rollout_id}:wave:0",
                )
            )
        self._emit(events)
        return self.get_rollout(who, rollout_id)

    def _set_deployment_version(
        self, conn: Connection, project: str, deployment: str, version: str
    ) -> None:
        conn.execute(
            sa.update(db.deployments)
            .where(db.deployments.c.project == project, db.deployments.c.name == deployment)
            .values(version=version, updated_at=self.clock())
        )

    def list_rollouts(self, who: Principal) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.rollouts)
                .where(db.rollouts.c.project == who.project)
                .order_by(db.rollouts.c.created_at.desc())
            )
            return [_rollout_summary(_row(r)) for r in rows]

    def get_rollout(self, who: Principal, rollout_id: str) -> dict[str, Any]:
        """A rollout with each wave and each site's state, for `rollout status`."""
        with self.engine.connect() as conn:
            row = self._rollout_row(conn, who.project, rollout_id)
            problems = {
                r.site: r.problem
                for r in conn.execute(
                    sa.select(db.rollout_sites).where(db.rollout_sites.c.rollout_id == rollout_id)
                )
            }
            site_rows = {
                r.name: r
                for r in conn.execute(
                    sa.select(db.sites).where(
                        db.sites.c.project == who.project, db.sites.c.name.in_(list(problems))
                    )
                )
            }
        summary = _rollout_summary(_row(row))
        waves = []
        for index, wave in enumerate(row.waves):
            if index < row.current_wave or row.state == RolloutState.COMPLETED.value:
                wave_state = "passed"
            elif index == row.current_wave:
                wave_state = "active" if row.state in ACTIVE else row.state
            else:
                wave_state = "pending"
            sites_view = []
            for name in wave:
                site = site_rows.get(name)
                status = (site.status or {}) if site is not None else {}
                loaded = (status.get("loaded") or {}).get(row.model)
                sites_view.append(
                    {
                        "site": name,
                        "loaded": loaded,
                        "healthy": site.healthy if site is not None else None,
                        "last_seen": site.last_seen if site is not None else None,
                        "problem": problems.get(name),
                        "on_target": loaded == row.to_version,
                    }
                )
            waves.append({"index": index, "state": wave_state, "sites": sites_view})
        return {**summary, "gate": row.gate, "waves": waves}

    def _rollout_row(
        self, conn: Connection, project: str, rollout_id: str, lock: bool = False
    ) -> Any:
        query = sa.select(db.rollouts).where(
            db.rollouts.c.project == project, db.rollouts.c.id == rollout_id
        )
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise FleetNotFound(f"no rollout {rollout_id!r}; see `edgeloop fleet rollout status`")
        return row

    def act(self, who: Principal, rollout_id: str, action: str, reason: str = "") -> dict[str, Any]:
        """Pause, resume, abort or roll back a rollout (by a person)."""
        with self._write() as conn:
            row = self._rollout_row(conn, who.project, rollout_id, lock=True)
            try:
                new_state = transition(RolloutState(row.state), action)
            except ValueError as exc:
                raise FleetConflict(str(exc)) from None
            note = reason or f"{action} by {who.name}"
            envelopes = self._move(conn, row, new_state, note)
        self._after_desired(who.project, envelopes)
        self._emit(
            [
                self._event(
                    f"rollout.{_ACTION_EVENTS[action]}",
                    rollout_id,
                    {"by": who.name, "reason": note},
                    f"{rollout_id}:{action}:{self.clock():.6f}",
                )
            ]
        )
        return self.get_rollout(who, rollout_id)

    def _move(
        self, conn: Connection, row: Any, state: RolloutState, reason: str
    ) -> list[tuple[str, dict[str, Any]]]:
        conn.execute(
            sa.update(db.rollouts)
            .where(db.rollouts.c.id == row.id)
            .values(state=state.value, reason=reason, updated_at=self.clock())
        )
        if state == RolloutState.ROLLED_BACK:
            # A rollback after completion moves the deployment itself back.
            self._set_deployment_version(conn, row.project, row.deployment, row.from_version)
        touched = [s for wave in row.waves[: row.current_wave + 1] for s in wave]
        return self._refresh_desired(conn, row.project, touched)

    def tick(self) -> list[str]:
        """Evaluate the gate of every running rollout once; returns what happened, for logs."""
        self.flush_heartbeats()
        with self.engine.connect() as conn:
            running = [
                (r.project, r.id)
                for r in conn.execute(
                    sa.select(db.rollouts.c.project, db.rollouts.c.id).where(
                        db.rollouts.c.state == RolloutState.RUNNING.value
                    )
                )
            ]
        notes = self.follow_aliases()
        for project, rollout_id in running:
            note = self._tick_one(project, rollout_id)
            if note:
                notes.append(note)
        return notes

    def _tick_one(self, project: str, rollout_id: str) -> str | None:
        now = self.clock()
        events: list[Event] = []
        with self._write() as conn:
            row = self._rollout_row(conn, project, rollout_id, lock=True)
            if row.state != RolloutState.RUNNING.value:
                return None
            gate = Gate(**row.gate)
            wave = list(row.waves[row.current_wave])
            problems = {
                r.site: r.problem
                for r in conn.execute(
                    sa.select(db.rollout_sites.c.site, db.rollout_sites.c.problem).where(
                        db.rollout_sites.c.rollout_id == rollout_id,
                        db.rollout_sites.c.wave == row.current_wave,
                    )
                )
            }
            health = []
            for site in conn.execute(
                sa.select(db.sites).where(db.sites.c.project == project, db.sites.c.name.in_(wave))
            ):
                status = site.status or {}
                loaded = (status.get("loaded") or {}).get(row.model)
                health.append(
                    SiteHealth(
                        site=site.name,
                        loaded_version=loaded,
                        healthy=bool(site.healthy),
                        error_rate=float(status.get("error_rate") or 0.0),
                        p99_ms=status.get("p99_ms"),
                        quality=status.get("quality"),
                        apply_failed=problems.get(site.name),
                        healthy_since=site.healthy_since if site.healthy else None,
                    )
                )
            missing = set(wave) - {h.site for h in health}
            health += [SiteHealth(s, None, False, apply_failed="site was removed") for s in missing]
            decision = evaluate_gate(
                health, row.to_version, gate, wave_started=row.wave_started_at, now=now
            )
            if decision.outcome == GateOutcome.WAIT:
                return None
            if decision.outcome == GateOutcome.FAIL:
                for name in decision.failed_sites:
                    conn.execute(
                        sa.update(db.rollout_sites)
                        .where(
                            db.rollout_sites.c.rollout_id == rollout_id,
                            db.rollout_sites.c.site == name,
                            db.rollout_sites.c.problem.is_(None),
                        )
                        .values(problem="gate failed")
                    )
                envelopes = self._move(
                    conn, row, RolloutState.ROLLED_BACK, f"halted: {decision.reason}"
                )
                data = {
                    "wave": row.current_wave,
                    "reason": decision.reason,
                    "failed_sites": list(decision.failed_sites),
                }
                events.append(
                    self._event("rollout.halted", rollout_id, data, f"{rollout_id}:halted")
                )
                events.append(
                    self._event(
                        "rollout.rolled_back", rollout_id, data, f"{rollout_id}:rolled_back"
                    )
                )
                note = f"{rollout_id} halted and rolled back: {decision.reason}"
            elif row.current_wave + 1 >= len(row.waves):
                conn.execute(
                    sa.update(db.rollouts)
                    .where(db.rollouts.c.id == rollout_id)
                    .values(
                        state=RolloutState.COMPLETED.value, reason=decision.reason, updated_at=now
                    )
                )
                self._set_deployment_version(conn, project, row.deployment, row.to_version)
                envelopes = self._refresh_desired(conn, project, [])
                events.append(
                    self._event(
                        "rollout.completed",
                        rollout_id,
                        {"deployment": row.deployment, "version": row.to_version},
                        f"{rollout_id}:completed",
                    )
                )
                note = f"{rollout_id} completed"
            else:
                nxt = row.current_wave + 1
                conn.execute(
                    sa.update(db.rollouts)
                    .where(db.rollouts.c.id == rollout_id)
                    .values(
                        current_wave=nxt,
                        wave_started_at=now,
                        reason=decision.reason,
                        updated_at=now,
                    )
                )
                envelopes = self._refresh_desired(conn, project, row.waves[nxt])
                events.append(
                    self._event(
                        "rollout.wave",
                        rollout_id,
                        {"wave": nxt, "sites": len(row.waves[nxt])},
                        f"{rollout_id}:wave:{nxt}",
                    )
                )
                note = f"{rollout_id} wave {nxt + 1}/{len(row.waves)} started"
        self._after_desired(project, envelopes)
        self._emit(events)
        return note

    # -- audit ------------------------------------------------------------------------------

    def record_audit(self, entry: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(sa.insert(db.audit).values(time=self.clock(), **entry))

    def list_audit(
        self, who: Principal, *, after: int = 0, limit: int = 100, since: float | None = None
    ) -> list[dict[str, Any]]:
        query = sa.select(db.audit).where(db.audit.c.project == who.project, db.audit.c.seq > after)
        if since is not None:
            query = query.where(db.audit.c.time >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(db.audit.c.seq).limit(limit))
            return [_row(r) for r in rows]


def _public_token(row: dict[str, Any]) -> dict[str, Any]:
    """A token row without its hash (the hash is not secret, but nobody needs it)."""
    return {k: v for k, v in row.items() if k not in ("hash", "labels")}


def _site_view(row: dict[str, Any]) -> dict[str, Any]:
    status = row.get("status") or {}
    return {
        "name": row["name"],
        "labels": row["labels"],
        "joined_at": row["joined_at"],
        "last_seen": row["last_seen"],
        "healthy": row["healthy"],
        "loaded": status.get("loaded") or {},
        "backlog": status.get("backlog"),
        "capture_drops": status.get("capture_drops"),
        "error_rate": status.get("error_rate"),
        "p99_ms": status.get("p99_ms"),
        "message": status.get("message"),
    }


def _rollout_view(row: Any) -> RolloutView:
    return RolloutView(
        id=row.id,
        deployment=row.deployment,
        from_version=row.from_version,
        to_version=row.to_version,
        state=RolloutState(row.state),
        waves=tuple(tuple(w) for w in row.waves),
        current_wave=row.current_wave,
    )


def _rollout_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "deployment": row["deployment"],
        "model": row["model"],
        "from_version": row["from_version"],
        "to_version": row["to_version"],
        "state": row["state"],
        "current_wave": row["current_wave"],
        "wave_count": len(row["waves"]),
        "site_count": sum(len(w) for w in row["waves"]),
        "reason": row["reason"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "created_by": row["created_by"],
    }
