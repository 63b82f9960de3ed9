"""The registry on SQLite and a real PostgreSQL: versions, aliases, states, lineage, events,
packages in the store, fetch with verification, failures and races."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from edgeloop.errors import (
    ModelNotFound,
    PackageVerificationFailed,
    RegistryError,
    StoreUnavailable,
    VersionImmutable,
)
from edgeloop.journal import SQLiteJournal
from edgeloop.journal.base import JournalSink
from edgeloop.model.manifest import MANIFEST_NAME, SIGNATURE_NAME
from edgeloop.registry import (
    CHAMPION,
    DatasetRef,
    Lineage,
    ObjectRef,
    Registry,
    VersionState,
    download_package,
    verify_package,
)
from edgeloop.store import LocalStore, open_store
from edgeloop.store.base import ObjectStore, PutData, sha256_bytes
from edgeloop.testing.serving import make_package

from .conftest import KeyPair

SHA = "ab" * 32


def lineage(run: str = "run-1", parent: int | None = None) -> Lineage:
    return Lineage(
        captures=[ObjectRef(key="captures/demo/edge-a/2026/01/01/b1.parquet", sha256=SHA,
                            site="edge-a", records=120)],
        labels=[ObjectRef(key="labels/demo/edge-a/2026/01/01/b1.parquet", sha256="cd" * 32)],
        dataset=DatasetRef(snapshot="snap-7", key="datasets/demo/snap-7/data.parquet",
                           sha256="ef" * 32, rows=1000),
        parent=parent, pipeline="retrain", run_id=run, code_version="git:1234abc",
        parameters={"C": 0.5, "max_iter": 200},
    )  # fmt: skip


def test_register_assigns_monotonic_versions_and_stores_signed_packages(
    registry: Registry, package: Path, store: LocalStore, journal: SQLiteJournal
) -> None:
    first = registry.register(package, lineage=lineage("run-1"))
    second = registry.register(package, lineage=lineage("run-2"))
    assert (first.version, second.version) == (1, 2)
    assert first.state is VersionState.REGISTERED
    assert first.prefix == "models/demo/1/"
    keys = [o.key for o in store.list("models/demo/")]
    assert keys == [f"models/demo/{v}/{f}" for v in (1, 2)
                    for f in (MANIFEST_NAME, "model.onnx", SIGNATURE_NAME)]  # fmt: skip
    for rel, digest in second.files.items():
        assert store.head(second.prefix + rel).sha256 == digest
    # The stored manifest carries the assigned version and the lineage.
    manifest = store.get(second.prefix + MANIFEST_NAME).read()
    assert b'"version": 2' in manifest and b"run-2" in manifest
    events = [e.event for e in journal.read(types=["model.registered"])]
    assert [(e.id, e.data["version"]) for e in events] == [
        ("model.registered/demo/1", 1), ("model.registered/demo/2", 2),
    ]  # fmt: skip
    assert events[1].data["files"] == second.files


def test_lineage_round_trips_and_parent_defaults_to_champion(
    registry: Registry, package: Path
) -> None:
    v1 = registry.register(package, lineage=lineage())
    assert v1.lineage.parent is None
    registry.promote("demo", 1)
    v2 = registry.register(package, lineage=lineage("run-2"))
    assert v2.lineage.parent == 1
    shown = registry.get("demo", 2).lineage
    assert shown.captures[0].sha256 == SHA and shown.captures[0].records == 120
    assert shown.dataset is not None and shown.dataset.snapshot == "snap-7"
    assert shown.parameters == {"C": 0.5, "max_iter": 200}
    assert shown.code_version == "git:1234abc"
    v3 = registry.register(package, lineage=lineage("run-3", parent=2))
    assert v3.lineage.parent == 2  # an explicit parent wins


def test_aliases_resolve_and_move(
    registry: Registry, package: Path, journal: SQLiteJournal
) -> None:
    for run in ("a", "b", "c"):
        registry.register(package, lineage=lineage(run))
    assert registry.get("demo").version == 3  # no champion yet: the latest
    registry.promote("demo", 2)
    registry.promote("demo", 3, "candidate")
    assert registry.get("demo").version == 2
    assert registry.get("demo", CHAMPION).version == 2
    assert registry.get("demo", "candidate").version == 3
    assert registry.get("demo", "latest").version == 3
    assert registry.get("demo", "1").version == 1
    assert registry.aliases("demo") == {"champion": 2, "candidate": 3}
    assert registry.get("demo", 2).aliases == ("champion",)
    registry.promote("demo", 2)  # no change: no event
    registry.promote("demo", 3)
    promoted = [e.event.data for e in journal.read(types=["model.promoted"])]
    assert [(d["alias"], d["version"], d["previous"]) for d in promoted] == [
        ("champion", 2, None), ("candidate", 3, None), ("champion", 3, 2),
    ]  # fmt: skip
    with pytest.raises(ModelNotFound, match="no alias 'stable'"):
        registry.get("demo", "stable")
    with pytest.raises(RegistryError, match="alias"):
        registry.promote("demo", 1, "Bad Alias")
    with pytest.raises(RegistryError, match="alias"):
        registry.promote("demo", 1, "latest")


def test_state_changes_are_announced_with_the_aliases_they_removed(
    registry: Registry, package: Path, journal: SQLiteJournal
) -> None:
    registry.register(package, lineage=lineage("a"))
    registry.promote("demo", 1)
    registry.promote("demo", 1, "candidate")
    registry.set_state("demo", 1, VersionState.ARCHIVED)
    registry.set_state("demo", 1, VersionState.REGISTERED)
    registry.set_state("demo", 1, VersionState.REVOKED)
    with pytest.raises(VersionImmutable):
        registry.set_state("demo", 1, VersionState.REGISTERED)  # refused: no event
    changes = [e.event for e in journal.read(types=["model.state_changed"])]
    assert [e.subject for e in changes] == ["models/demo/1/"] * 3
    assert [(e.data["previous"], e.data["state"], e.data["aliases_removed"]) for e in changes] == [
        ("registered", "archived", ["candidate", "champion"]),
        ("archived", "registered", []),
        ("registered", "revoked", []),
    ]


def test_unknown_model_and_version(registry: Registry, package: Path) -> None:
    with pytest.raises(ModelNotFound, match="no model 'nope'"):
        registry.get("nope")
    with pytest.raises(ModelNotFound):
        registry.versions("nope")
    registry.register(package)
    with pytest.raises(ModelNotFound, match="demo:9"):
        registry.get("demo", 9)
    with pytest.raises(ModelNotFound):
        registry.promote("demo", 9)


def test_states_follow_the_allowed_transitions(registry: Registry, package: Path) -> None:
    registry.register(package)
    registry.register(package)
    registry.promote("demo", 1)
    archived = registry.set_state("demo", 1, VersionState.ARCHIVED)
    assert archived.state is VersionState.ARCHIVED and archived.aliases == ()
    with pytest.raises(RegistryError, match="only registered versions"):
        registry.promote("demo", 1)
    registry.set_state("demo", 1, VersionState.REGISTERED)
    registry.set_state("demo", 2, VersionState.REVOKED)
    with pytest.raises(VersionImmutable):
        registry.set_state("demo", 2, VersionState.REGISTERED)  # revoked is final
    with pytest.raises(VersionImmutable):
        registry.set_state("demo", 1, VersionState.PENDING)
    with pytest.raises(RegistryError, match="revoked"):
        registry.fetch("demo", 2, registry_tmp(registry) / "x")


def registry_tmp(registry: Registry) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp())


def test_fetch_downloads_and_verifies(
    registry: Registry, package: Path, tmp_path: Path, keys: KeyPair
) -> None:
    info = registry.register(package, lineage=lineage())
    dest = tmp_path / "edge" / "demo-1"
    fetched = registry.fetch("demo", 1, dest)
    assert fetched.root == dest and fetched.manifest.version == 1
    assert verify_package(dest, keys.public).files == {
        k: v for k, v in info.files.items() if k != SIGNATURE_NAME
    }
    with pytest.raises(RegistryError, match="already exists"):
        registry.fetch("demo", 1, dest)


def test_fetch_refuses_bytes_changed_in_the_store(
    registry: Registry, package: Path, store: LocalStore, tmp_path: Path
) -> None:
    info = registry.register(package)
    store.put(info.prefix + "model.onnx", b"not the model")
    dest = tmp_path / "dest"
    with pytest.raises(RegistryError, match="damaged"):
        registry.fetch("demo", 1, dest)
    assert not dest.exists() and list(tmp_path.glob(".dest.*")) == []


def test_fetch_refuses_a_package_whose_records_were_also_forged(
    registry: Registry, package: Path, store: LocalStore, tmp_path: Path
) -> None:
    # Someone with write access to both the store and the database still cannot get a
    # package past the signature check.
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from edgeloop.registry.db import VersionRow

    info = registry.register(package)
    forged = b"forged model bytes"
    store.put(info.prefix + "model.onnx", forged)
    files = dict(info.files) | {"model.onnx": sha256_bytes(forged)}
    with Session(registry.engine) as session, session.begin():
        session.execute(update(VersionRow).where(VersionRow.version == 1).values(files=files))
    with pytest.raises(PackageVerificationFailed, match=r"model\.onnx"):
        registry.fetch("demo", 1, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_source_key_makes_registration_idempotent(
    registry: Registry, package: Path, journal: SQLiteJournal
) -> None:
    first = registry.register(package, lineage=lineage("run-9"), source_key="run-9")
    again = registry.register(package, lineage=lineage("run-9"), source_key="run-9")
    assert again.version == first.version == 1
    assert [v.version for v in registry.versions("demo")] == [1]
    assert len(journal.read(types=["model.registered"])) == 1


class FailingStore:
    """Wraps a store; the put of any key ending in `fail_on` raises once (an outage)."""

    def __init__(self, inner: ObjectStore, fail_on: str) -> None:
        self.inner = inner
        self.url = inner.url
        self.fail_on: str | None = fail_on

    def put(self, key: str, data: PutData, **kwargs: Any) -> Any:
        if self.fail_on and key.endswith(self.fail_on):
            self.fail_on = None
            raise StoreUnavailable(f"{key}: injected outage")
        return self.inner.put(key, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_failed_publish_registers_nothing_and_never_reuses_the_number(
    database: str, store: LocalStore, keys: KeyPair, journal: SQLiteJournal, package: Path
) -> None:
    failing = FailingStore(store, SIGNATURE_NAME)
    registry = Registry(database, failing, public_key=keys.public,  # type: ignore[arg-type]
                        signing_key=keys.private, events=JournalSink(journal))  # fmt: skip
    try:
        with pytest.raises(StoreUnavailable):
            registry.register(package)
        assert registry.versions("demo") == []
        assert [(v.version, v.state) for v in registry.versions("demo", include_all=True)] == [
            (1, VersionState.FAILED)
        ]
        with pytest.raises(ModelNotFound):
            registry.get("demo")
        assert journal.read(types=["model.registered"]) == []
        assert registry.register(package).version == 2
    finally:
        registry.close()


def test_register_refuses_a_mismatched_key_pair(
    database: str, store: LocalStore, keys: KeyPair, other_keys: KeyPair, package: Path
) -> None:
    registry = Registry(database, store, public_key=other_keys.public, signing_key=keys.private)
    try:
        with pytest.raises(PackageVerificationFailed, match="different key"):
            registry.register(package)
        assert list(store.list("models/")) == []
    finally:
        registry.close()


def test_register_needs_the_signing_key(
    database: str, store: LocalStore, keys: KeyPair, package: Path
) -> None:
    registry = Registry(database, store, public_key=keys.public)
    try:
        with pytest.raises(RegistryError, match="signing key"):
            registry.register(package)
    finally:
        registry.close()


def test_pickle_packages_cannot_be_registered(registry: Registry, package: Path) -> None:
    from edgeloop.errors import UntrustedModel

    (package / "model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(UntrustedModel):
        registry.register(package)


def test_concurrent_registrations_get_distinct_contiguous_versions(
    database: str, store: LocalStore, keys: KeyPair, package: Path
) -> None:
    errors: list[BaseException] = []
    got: list[int] = []

    def worker() -> None:
        reg = Registry(database, store, public_key=keys.public, signing_key=keys.private)
        try:
            for _ in range(3):
                got.append(reg.register(package).version)
        except BaseException as exc:
            errors.append(exc)
        finally:
            reg.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got) == list(range(1, 13))


def test_registry_on_the_real_s3_store(s3_url: str, tmp_path: Path, keys: KeyPair) -> None:
    store = open_store(s3_url)
    registry = Registry(tmp_path / "r.db", store, public_key=keys.public,
                        signing_key=keys.private)  # fmt: skip
    try:
        pkg = make_package(tmp_path / "src", name="churn", version=1)
        info = registry.register(pkg, lineage=lineage())
        assert {o.key for o in store.list("models/churn/1/")} == {
            info.prefix + f for f in info.files
        }
        fetched = registry.fetch("churn", None, tmp_path / "out")
        assert fetched.manifest.ref == "churn:1"
    finally:
        registry.close()
        store.close()


def test_download_package_from_a_store_without_the_database(
    registry: Registry, package: Path, store: LocalStore, tmp_path: Path, keys: KeyPair
) -> None:
    info = registry.register(package)
    got = download_package(store, info.prefix, tmp_path / "edge" / "v1", keys.public)
    assert got.manifest.ref == "demo:1" and (tmp_path / "edge" / "v1" / SIGNATURE_NAME).exists()
    from edgeloop.errors import DowngradeRefused

    with pytest.raises(DowngradeRefused):
        download_package(store, info.prefix, tmp_path / "v1b", keys.public, installed_version=2)
    store.put(info.prefix + "extra/payload.bin", b"planted")
    with pytest.raises(PackageVerificationFailed, match="extra"):
        download_package(store, info.prefix, tmp_path / "v1c", keys.public)
    with pytest.raises(ModelNotFound):
        download_package(store, "models/demo/9/", tmp_path / "v9", keys.public)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _register_and_kill(
    database: str, store: LocalStore, keys: KeyPair, package: Path, tmp: Path, stall: str
) -> None:
    """Run a registration in a child process and kill -9 it where `stall` says."""
    import signal
    import subprocess
    import sys

    public_file = tmp / "pub.pem"
    public_file.write_text(keys.public)
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("register_child.py")), database,
         str(store.root), str(keys.private), str(public_file), str(package), "run-1", stall],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == b"READY", child.stderr.read() if child.stderr else b""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_kill_9_mid_registration_leaves_a_number_that_is_swept_never_reused(
    database: str, store: LocalStore, keys: KeyPair, package: Path, tmp_path: Path
) -> None:
    _register_and_kill(database, store, keys, package, tmp_path, "store")
    registry = Registry(database, store, public_key=keys.public, signing_key=keys.private)
    try:
        assert [(v.version, v.state) for v in registry.versions("demo", include_all=True)] == [
            (1, VersionState.PENDING)
        ]
        assert {o.key for o in store.list("models/demo/1/")} == {
            "models/demo/1/" + MANIFEST_NAME, "models/demo/1/model.onnx",
        }  # fmt: skip
        # The writer is dead (same host, its pid gone): the retry sweeps its number at once.
        again = registry.register(package, source_key="run-1")
        assert again.version == 2 and again.state is VersionState.REGISTERED
        assert [(v.version, v.state) for v in registry.versions("demo", include_all=True)] == [
            (1, VersionState.FAILED), (2, VersionState.REGISTERED),
        ]  # fmt: skip
        assert list(store.list("models/demo/1/")) == []
        assert registry.register(package, source_key="run-1").version == 2  # idempotent
    finally:
        registry.close()


def test_a_live_or_unknown_writer_is_swept_only_when_stale(
    registry: Registry, store: LocalStore, package: Path
) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from edgeloop.registry.db import VersionRow
    from edgeloop.registry.owner import current_owner

    registry.register(package)
    for owner in (current_owner(), "another-host:12345:999"):
        with Session(registry.engine) as session, session.begin():
            session.execute(
                update(VersionRow).values(state="pending", owner=owner, source_key="run-9")
            )
        assert registry.recover().swept == []  # alive here, or unknown elsewhere: not stale
        with pytest.raises(RegistryError, match="pending"):
            registry.register(package, source_key="run-9")
        assert [v.version for v in registry.sweep_pending(older_than=0)] == [1]
        assert registry.get("demo", 1).state is VersionState.FAILED


def test_kill_9_after_recording_before_the_event_is_announced_by_recover(
    database: str, store: LocalStore, keys: KeyPair, package: Path, tmp_path: Path,
    journal: SQLiteJournal,
) -> None:  # fmt: skip
    _register_and_kill(database, store, keys, package, tmp_path, "event")
    assert journal.read(0, types=["model.registered"]) == []
    registry = Registry(database, store, public_key=keys.public, signing_key=keys.private,
                        events=JournalSink(journal))  # fmt: skip
    try:
        assert registry.get("demo", 1).state is VersionState.REGISTERED  # recorded, not announced
        done = registry.recover()
        assert [v.ref for v in done.announced] == ["demo:1"] and done.swept == []
        assert registry.recover().announced == []  # sent once, then marked
        registry.register(package)  # announced as it registers: nothing left for recover
        assert registry.recover().announced == []
    finally:
        registry.close()
    entries = journal.read(0, types=["model.registered"])
    assert [e.event.id for e in entries] == ["model.registered/demo/1", "model.registered/demo/2"]


def test_a_database_from_before_new_columns_is_upgraded_in_place(
    store: LocalStore, keys: KeyPair, package: Path, tmp_path: Path, journal: SQLiteJournal
) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    Registry(db, store, public_key=keys.public, signing_key=keys.private).register(package)
    with sqlite3.connect(db) as conn:  # the schema before `owner` and `announced` existed
        conn.execute("ALTER TABLE registry_versions DROP COLUMN owner")
        conn.execute("ALTER TABLE registry_versions DROP COLUMN announced")
    registry = Registry(db, store, public_key=keys.public, signing_key=keys.private,
                        events=JournalSink(journal))  # fmt: skip
    try:
        assert registry.get("demo", 1).state is VersionState.REGISTERED
        assert [v.ref for v in registry.recover().announced] == ["demo:1"]
        assert registry.register(package).version == 2
    finally:
        registry.close()


def test_a_reset_database_never_overwrites_packages_in_the_store(
    store: LocalStore, keys: KeyPair, package: Path, tmp_path: Path
) -> None:
    first = Registry(tmp_path / "a.db", store, public_key=keys.public, signing_key=keys.private)
    original = first.register(package)
    first.close()
    before = {o.key: o.sha256 for o in store.list("models/demo/1/")}
    fresh = Registry(tmp_path / "b.db", store, public_key=keys.public, signing_key=keys.private)
    try:
        info = fresh.register(package, lineage=lineage("run-x"))
        assert info.version == 2
        assert {o.key: o.sha256 for o in store.list("models/demo/1/")} == before
        assert fresh.versions("demo", include_all=True)[0].state is VersionState.FAILED
        assert original.files[MANIFEST_NAME] == before["models/demo/1/" + MANIFEST_NAME]
    finally:
        fresh.close()
