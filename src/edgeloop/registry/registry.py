"""The model registry: versions (monotonic per model, immutable once registered), aliases,
states, lineage and cards in SQL; signed packages in the core store at models/<name>/<v>/."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgeloop.errors import ModelNotFound, RegistryError, VersionImmutable
from edgeloop.journal.base import EventSink
from edgeloop.model.events import Event, EventType, utcnow
from edgeloop.model.manifest import MANIFEST_NAME, SIGNATURE_NAME, ModelManifest
from edgeloop.registry.db import (
    TRANSITIONS,
    AliasRow,
    ModelRow,
    VersionRow,
    VersionState,
    make_engine,
)
from edgeloop.registry.lineage import Lineage
from edgeloop.registry.owner import current_owner, owner_is_dead
from edgeloop.registry.signing import (
    VerifiedPackage,
    load_private_key,
    package_files,
    public_key_pem,
    sha256_file,
    sign_package,
    verify_package,
)
from edgeloop.store.base import ObjectStore
from edgeloop.store.keys import validate_key

ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
CHAMPION = "champion"
CANDIDATE = "candidate"
RESERVED_ALIASES = frozenset({"latest"})
_RESERVE_ATTEMPTS = 20
# A pending version whose writer cannot be checked (another host) is abandoned after this.
STALE_PENDING_SECONDS = 3600.0


@dataclass(frozen=True)
class Recovery:
    """What `Registry.recover` repaired: versions swept to `failed`, versions re-announced."""

    swept: list[VersionInfo]
    announced: list[VersionInfo]


@dataclass(frozen=True)
class VersionInfo:
    """What the registry knows about one version."""

    name: str
    version: int
    state: VersionState
    prefix: str
    format: str
    runtime: str
    files: dict[str, str]
    metrics: dict[str, float]
    lineage: Lineage
    card: dict[str, Any]
    created: datetime
    registered: datetime | None
    signer: str | None
    aliases: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values (for `--json` output and APIs)."""
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "aliases": list(self.aliases),
            "prefix": self.prefix,
            "format": self.format,
            "runtime": self.runtime,
            "files": self.files,
            "metrics": self.metrics,
            "lineage": self.lineage.to_json(),
            "card": self.card,
            "signer": self.signer,
            "created": self.created.isoformat(),
            "registered": self.registered.isoformat() if self.registered else None,
        }


def key_id(public_key: str) -> str:
    """A short, stable id of a signing key: SHA-256 of its public key PEM, 16 hex digits."""
    return hashlib.sha256(public_key.strip().encode()).hexdigest()[:16]


class Registry:
    """Register, list, inspect, promote and fetch model versions.

    `store` is the core object store; `signing_key` (a private key path) is needed only to
    register; `public_key` (PEM) is what every fetched package is verified against.
    """

    def __init__(
        self,
        database: Engine | str | Path,
        store: ObjectStore,
        *,
        public_key: str,
        signing_key: Path | None = None,
        events: EventSink | None = None,
        site: str = "core",
    ) -> None:
        self.engine = database if isinstance(database, Engine) else make_engine(database)
        self.store = store
        self.public_key = public_key
        self.signing_key = signing_key
        self.events = events
        self.site = site

    def close(self) -> None:
        self.engine.dispose()

    # -- register --------------------------------------------------------------------------
    def register(
        self,
        package_dir: Path,
        *,
        lineage: Lineage | None = None,
        source_key: str | None = None,
        aliases: Sequence[str] = (),
    ) -> VersionInfo:
        """Register the package at `package_dir` as the model's next version.

        The package is checked (no symlinks, no pickle), given its version number and
        lineage in a rewritten manifest, signed, written to the store with every file's
        SHA-256, recorded, and announced as `model.registered`. With `source_key` (e.g. a
        pipeline run id) a repeated call returns the version already made.
        """
        if self.signing_key is None:
            raise RegistryError(
                "registering needs the core's signing key; run at the core site or pass --key"
            )
        load_private_key(self.signing_key)
        for alias in aliases:
            _check_alias(alias)
        manifest = _read_source_manifest(package_dir)
        name = manifest.name
        if source_key is not None:
            done = self._by_source_key(name, source_key)
            if done is not None:
                self._emit_registered(done)  # at-least-once: the event may have been lost
                return done
        self.sweep_pending()  # a crashed registration of this key must not block its retry
        lineage = _lineage_for(manifest, lineage, self._alias_version(name, CHAMPION))
        for _ in range(_RESERVE_ATTEMPTS):
            version = self._reserve(name, manifest, source_key)
            if next(iter(self.store.list(package_prefix(name, version))), None) is None:
                break
            # The store already holds a package under this number (the database was
            # reset or restored): never overwrite what sites may run; skip the number.
            self._set_failed(name, version)
        else:
            raise VersionImmutable(
                f"{name}: the store already holds packages for every version number tried; "
                "the registry database does not match the store"
            )
        try:
            files = self._publish(package_dir, manifest, version, lineage)
        except BaseException:
            self._set_failed(name, version)
            raise
        with Session(self.engine) as session, session.begin():
            row = _version_row(session, name, version)
            if row.state != VersionState.PENDING.value:
                raise RegistryError(
                    f"{name}:{version} was marked {row.state} while it was being written "
                    "(swept as stale); register again"
                )
            row.state = VersionState.REGISTERED.value
            row.files = files
            row.metrics = dict(manifest.metrics)
            row.lineage = lineage.to_json()
            row.card = manifest.card.model_dump(mode="json")
            row.signer = key_id(self.public_key)
            row.registered = utcnow()
        for alias in aliases:
            self.promote(name, version, alias)
        info = self.get(name, version)
        self._emit_registered(info)
        return info

    def _reserve(self, name: str, manifest: ModelManifest, source_key: str | None) -> int:
        """Take the model's next version number; the unique constraint settles races."""
        for _ in range(_RESERVE_ATTEMPTS):
            try:
                with Session(self.engine) as session, session.begin():
                    if session.get(ModelRow, name) is None:
                        session.add(ModelRow(name=name))
                        session.flush()
                    top = session.scalar(
                        select(func.max(VersionRow.version)).where(VersionRow.model == name)
                    )
                    version = (top or 0) + 1
                    session.add(
                        VersionRow(
                            model=name, version=version, source_key=source_key,
                            prefix=package_prefix(name, version), format=manifest.format.value,
                            runtime=manifest.runtime.value, state=VersionState.PENDING.value,
                            owner=current_owner(),
                        )
                    )  # fmt: skip
                return version
            except IntegrityError:
                if source_key is not None:
                    self._check_source_key_free(name, source_key)
                continue  # another writer took this number (or created the model): retry
        raise RegistryError(f"{name}: could not reserve a version number; retry")

    def _publish(
        self, package_dir: Path, manifest: ModelManifest, version: int, lineage: Lineage
    ) -> dict[str, str]:
        """Stage, sign, self-verify and upload the package; returns path -> SHA-256."""
        assert self.signing_key is not None
        with tempfile.TemporaryDirectory(prefix="edgeloop-register-") as tmp:
            stage = Path(tmp) / f"{manifest.name}-{version}"
            stage.mkdir()
            for rel in sorted(package_files(package_dir.resolve())):
                if rel == MANIFEST_NAME:
                    continue
                target = stage / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package_dir / rel, target, follow_symlinks=False)
            final = manifest.model_copy(update={"version": version, "lineage": lineage.to_json()})
            (stage / MANIFEST_NAME).write_text(final.model_dump_json(indent=2), encoding="utf-8")
            sign_package(stage, self.signing_key)
            # Verifying with the configured public key catches a key pair that does not match
            # before anything is published that no site would accept.
            verified = verify_package(stage, self.public_key)
            files = dict(verified.files)
            files[SIGNATURE_NAME] = sha256_file(stage / SIGNATURE_NAME)
            prefix = package_prefix(manifest.name, version)
            # The signature goes last: a reader that finds it finds every file it covers.
            for rel in sorted(files, key=lambda r: (r == SIGNATURE_NAME, r)):
                with open(stage / rel, "rb") as handle:
                    self.store.put(prefix + rel, handle, expected_sha256=files[rel])
            return files

    def _check_source_key_free(self, name: str, source_key: str) -> None:
        with Session(self.engine) as session:
            row = session.scalar(
                select(VersionRow).where(
                    VersionRow.model == name, VersionRow.source_key == source_key
                )
            )
            if row is not None:
                raise RegistryError(
                    f"{name}: version {row.version} with source key {source_key!r} is "
                    f"{row.state} (since {row.created:%Y-%m-%d %H:%M:%S}); retry later, or if "
                    "the process registering it died on another host, it is freed after "
                    f"{STALE_PENDING_SECONDS:.0f} s (`Registry.sweep_pending(older_than=0)` "
                    "frees it now)"
                )

    def _set_failed(self, name: str, version: int) -> None:
        """Keep the number used (never reused) but mark it as not a version to serve; its
        source key is freed so the registration can be retried."""
        with Session(self.engine) as session, session.begin():
            row = _version_row(session, name, version)
            if row.state == VersionState.PENDING.value:
                row.state = VersionState.FAILED.value
                row.source_key = None

    def sweep_pending(self, older_than: float = STALE_PENDING_SECONDS) -> list[VersionInfo]:
        """Mark abandoned `pending` versions `failed` and delete what they had written to the
        store: those whose registering process on this host has exited, and any left pending
        for more than `older_than` seconds (a writer on another host)."""
        cutoff = utcnow().timestamp() - older_than
        swept: list[VersionInfo] = []
        with Session(self.engine) as session:
            rows = session.scalars(
                select(VersionRow).where(VersionRow.state == VersionState.PENDING.value)
            ).all()
            stale = [
                (r.model, r.version)
                for r in rows
                if _timestamp(r.created) <= cutoff or owner_is_dead(r.owner)
            ]
        for name, version in stale:
            prefix = package_prefix(name, version)
            for info in list(self.store.list(prefix)):
                self.store.delete(info.key)
            self._set_failed(name, version)
            swept.append(self.get(name, version))
        return swept

    def recover(self, older_than: float = STALE_PENDING_SECONDS) -> Recovery:
        """Repair what a crash can leave behind (the core runs this at start): sweep abandoned
        pending versions, and send `model.registered` for registered versions whose event may
        have been lost (event ids make a repeat a no-op)."""
        swept = self.sweep_pending(older_than)
        announced: list[VersionInfo] = []
        if self.events is not None:
            with Session(self.engine) as session:
                rows = session.scalars(
                    select(VersionRow)
                    .where(
                        VersionRow.state == VersionState.REGISTERED.value,
                        VersionRow.announced.is_(None),
                    )
                    .order_by(VersionRow.model, VersionRow.version)
                ).all()
                todo = [(r.model, r.version) for r in rows]
            for name, version in todo:
                info = self.get(name, version)
                self._emit_registered(info)
                announced.append(info)
        return Recovery(swept=swept, announced=announced)

    def _emit_registered(self, info: VersionInfo) -> None:
        if self.events is None:
            return
        self.events.emit(
            Event(
                id=f"model.registered/{info.name}/{info.version}",
                type=EventType.MODEL_REGISTERED.value,
                site=self.site,
                subject=info.prefix,
                data={
                    "name": info.name,
                    "version": info.version,
                    "prefix": info.prefix,
                    "files": info.files,
                    "run_id": info.lineage.run_id,
                    "signer": info.signer,
                },
            )
        )
        with Session(self.engine) as session, session.begin():
            row = _version_row(session, info.name, info.version)
            if row.announced is None:
                row.announced = utcnow()

    # -- read ------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Names of every registered model, sorted."""
        with Session(self.engine) as session:
            return list(session.scalars(select(ModelRow.name).order_by(ModelRow.name)))

    def versions(self, name: str, *, include_all: bool = False) -> list[VersionInfo]:
        """The model's versions, oldest first; pending and failed ones only with include_all."""
        with Session(self.engine) as session:
            if session.get(ModelRow, name) is None:
                raise ModelNotFound(f"no model {name!r} in the registry; `edgeloop models ls`")
            rows = session.scalars(
                select(VersionRow).where(VersionRow.model == name).order_by(VersionRow.version)
            ).all()
            aliases = self._aliases(session, name)
            return [
                _info(r, aliases.get(r.version, ()))
                for r in rows
                if include_all or r.state not in (VersionState.PENDING, VersionState.FAILED)
            ]

    def get(self, name: str, ref: int | str | None = None) -> VersionInfo:
        """A version by number, by alias, or (None) the champion, else the latest registered."""
        with Session(self.engine) as session:
            version = self._resolve(session, name, ref)
            row = _version_row(session, name, version)
            return _info(row, self._aliases(session, name).get(version, ()))

    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for the model."""
        with Session(self.engine) as session:
            rows = session.scalars(select(AliasRow).where(AliasRow.model == name)).all()
            return {r.alias: r.version for r in rows}

    def _resolve(self, session: Session, name: str, ref: int | str | None) -> int:
        if session.get(ModelRow, name) is None:
            raise ModelNotFound(f"no model {name!r} in the registry; `edgeloop models ls`")
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return int(ref)
        if ref is None or ref == "latest":
            alias = None if ref == "latest" else session.get(AliasRow, (name, CHAMPION))
            if alias is not None:
                return alias.version
            top = session.scalar(
                select(func.max(VersionRow.version)).where(
                    VersionRow.model == name, VersionRow.state == VersionState.REGISTERED.value
                )
            )
            if top is None:
                raise ModelNotFound(f"model {name!r} has no registered version yet")
            return int(top)
        alias = session.get(AliasRow, (name, ref))
        if alias is None:
            known = sorted(self._alias_names(session, name))
            raise ModelNotFound(f"model {name!r} has no alias {ref!r} (aliases: {known or 'none'})")
        return alias.version

    @staticmethod
    def _aliases(session: Session, name: str) -> dict[int, tuple[str, ...]]:
        found: dict[int, list[str]] = {}
        for row in session.scalars(select(AliasRow).where(AliasRow.model == name)):
            found.setdefault(row.version, []).append(row.alias)
        return {v: tuple(sorted(a)) for v, a in found.items()}

    @staticmethod
    def _alias_names(session: Session, name: str) -> list[str]:
        return list(session.scalars(select(AliasRow.alias).where(AliasRow.model == name)))

    def _alias_version(self, name: str, alias: str) -> int | None:
        with Session(self.engine) as session:
            row = session.get(AliasRow, (name, alias))
            return None if row is None else row.version

    def _by_source_key(self, name: str, source_key: str) -> VersionInfo | None:
        with Session(self.engine) as session:
            row = session.scalar(
                select(VersionRow).where(
                    VersionRow.model == name, VersionRow.source_key == source_key
                )
            )
            if row is None or row.state != VersionState.REGISTERED.value:
                return None
            return _info(row, self._aliases(session, name).get(row.version, ()))

    # -- change ----------------------------------------------------------------------------
    def promote(self, name: str, version: int, alias: str = CHAMPION) -> VersionInfo:
        """Point `alias` at `version` (a registered one); emits `model.promoted` on a change."""
        _check_alias(alias)
        with Session(self.engine) as session, session.begin():
            row = _version_row(session, name, version)
            if row.state != VersionState.REGISTERED.value:
                raise RegistryError(
                    f"{name}:{version} is {row.state}; only registered versions can be promoted"
                )
            current = session.get(AliasRow, (name, alias))
            previous = None if current is None else current.version
            if current is None:
                session.add(AliasRow(model=name, alias=alias, version=version))
            else:
                current.version = version
                current.updated = utcnow()
        if previous != version and self.events is not None:
            self.events.emit(
                Event(
                    type=EventType.MODEL_PROMOTED.value,
                    site=self.site,
                    subject=package_prefix(name, version),
                    data={"name": name, "version": version, "alias": alias, "previous": previous},
                )
            )
        return self.get(name, version)

    def set_state(self, name: str, version: int, state: VersionState) -> VersionInfo:
        """Archive, restore or revoke a version; nothing else about it ever changes. Emits
        `model.state_changed` with the aliases the change removed."""
        removed: list[str] = []
        with Session(self.engine) as session, session.begin():
            row = _version_row(session, name, version)
            previous = row.state
            if state not in TRANSITIONS[VersionState(previous)]:
                raise VersionImmutable(
                    f"{name}:{version} cannot go from {previous} to {state.value}"
                )
            row.state = state.value
            if state is not VersionState.REGISTERED:
                for alias in session.scalars(
                    select(AliasRow).where(AliasRow.model == name, AliasRow.version == version)
                ):
                    removed.append(alias.alias)
                    session.delete(alias)  # an alias never points at a version not to serve
        if self.events is not None:
            self.events.emit(
                Event(
                    type=EventType.MODEL_STATE_CHANGED.value,
                    site=self.site,
                    subject=package_prefix(name, version),
                    data={
                        "name": name,
                        "version": version,
                        "state": state.value,
                        "previous": previous,
                        "aliases_removed": sorted(removed),
                    },
                )
            )
        return self.get(name, version)

    # -- fetch -----------------------------------------------------------------------------
    def fetch(self, name: str, ref: int | str | None, dest: Path) -> VerifiedPackage:
        """Download a version into the new directory `dest`, checking every file's SHA-256
        against the registry and then the signature; `dest` appears only when all passed."""
        info = self.get(name, ref)
        if info.state is not VersionState.REGISTERED:
            raise RegistryError(f"{info.ref} is {info.state.value}; it is not to be served")
        if dest.exists():
            raise RegistryError(f"{dest} already exists; choose a new directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            for rel, digest in sorted(info.files.items()):
                validate_key(rel)  # the file list names paths inside the package only
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                hasher = hashlib.sha256()
                with self.store.get(info.prefix + rel) as reader, open(target, "wb") as out:
                    for chunk in reader:
                        hasher.update(chunk)
                        out.write(chunk)
                if hasher.hexdigest() != digest:
                    raise RegistryError(
                        f"{info.prefix}{rel}: store bytes hash to {hasher.hexdigest()}, the "
                        f"registry recorded {digest}; the stored package is damaged"
                    )
            verified = verify_package(tmp, self.public_key)
            tmp.replace(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return VerifiedPackage(root=dest, files=verified.files, manifest=verified.manifest)


def package_prefix(name: str, version: int) -> str:
    """Where a version's package lives in the core store."""
    return f"models/{name}/{version}/"


def iter_lineage_objects(lineage: Lineage) -> Iterator[tuple[str, str]]:
    """(key, sha256) of every capture and label object a version was made from."""
    for ref in [*lineage.captures, *lineage.labels]:
        yield ref.key, ref.sha256


def public_key_of(signing_key: Path) -> str:
    """The public key PEM of the private key at `signing_key`."""
    return public_key_pem(load_private_key(signing_key))


def _check_alias(alias: str) -> None:
    if not ALIAS_PATTERN.fullmatch(alias) or alias in RESERVED_ALIASES:
        raise RegistryError(
            f"alias {alias!r}: use lowercase letters, digits, '-', '_', starting with a letter "
            f"(not {', '.join(sorted(RESERVED_ALIASES))})"
        )


def _read_source_manifest(package_dir: Path) -> ModelManifest:
    """Check a package to register (layout, no pickle) and read its manifest."""
    from edgeloop.serving.package import load_package

    return load_package(package_dir).manifest


def _lineage_for(manifest: ModelManifest, given: Lineage | None, champion: int | None) -> Lineage:
    base = Lineage.model_validate(manifest.lineage) if manifest.lineage else Lineage()
    merged = base.merged(given) if given is not None else base
    if merged.parent is None and champion is not None:
        merged = merged.model_copy(update={"parent": champion})  # refines what serves now
    return merged


def _timestamp(value: datetime) -> float:
    # SQLite returns naive datetimes; edgeloop stores UTC only.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _version_row(session: Session, name: str, version: int) -> VersionRow:
    row = session.scalar(
        select(VersionRow).where(VersionRow.model == name, VersionRow.version == version)
    )
    if row is None:
        raise ModelNotFound(f"no version {name}:{version} in the registry")
    return row


def _info(row: VersionRow, aliases: tuple[str, ...]) -> VersionInfo:
    return VersionInfo(
        name=row.model,
        version=row.version,
        state=VersionState(row.state),
        prefix=row.prefix,
        format=row.format,
        runtime=row.runtime,
        files=dict(row.files or {}),
        metrics={k: float(v) for k, v in (row.metrics or {}).items()},
        lineage=Lineage.model_validate(row.lineage or {}),
        card=dict(row.card or {}),
        created=row.created,
        registered=row.registered,
        signer=row.signer,
        aliases=aliases,
    )


MAX_PACKAGE_OBJECTS = 1000


def download_package(
    store: ObjectStore,
    prefix: str,
    dest: Path,
    public_key: str,
    *,
    installed_version: int | None = None,
) -> VerifiedPackage:
    """Copy the package under `prefix` of any store (e.g. an edge's own copy of
    models/<name>/<version>/) into the new directory `dest`, and verify it strictly.

    Needs no registry database: every object under the prefix is taken, so an object
    planted there is an extra file and fails verification. `dest` appears only when the
    package verified.
    """
    if not prefix.endswith("/"):
        prefix += "/"
    if dest.exists():
        raise RegistryError(f"{dest} already exists; choose a new directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        count = 0
        for info in store.list(prefix):
            count += 1
            if count > MAX_PACKAGE_OBJECTS:
                raise RegistryError(f"{prefix}: more than {MAX_PACKAGE_OBJECTS} objects")
            rel = info.key.removeprefix(prefix)
            validate_key(rel)
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with store.get(info.key) as reader, open(target, "wb") as out:
                for chunk in reader:
                    out.write(chunk)
        if count == 0:
            raise ModelNotFound(f"no package under {prefix} in {store.url}")
        verified = verify_package(tmp, public_key, installed_version=installed_version)
        tmp.replace(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return VerifiedPackage(root=dest, files=verified.files, manifest=verified.manifest)
