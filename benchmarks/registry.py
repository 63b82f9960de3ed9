"""Registry benchmark: signing and strict verification of model packages beside the raw
`model-signing` library, and a whole register / fetch beside its minimal equivalent.

Run: .venv/bin/python benchmarks/registry.py [--rounds 5] [--mib 64]

Two packages: a small real ONNX model (a few KiB) and a large one (`--mib` MiB of model
bytes). For each, alternating reference and edgeloop (A B A B ...):

- sign:     reference `model_signing.signing.Config().use_elliptic_key_signer(...).sign()`
            with the library's default hashing; edgeloop `sign_package` (layout check, then
            the library with edgeloop's hashing config, atomic replace of model.sig).
- verify:   reference `model_signing.verifying.Config().use_elliptic_key_verifier(...)
            .verify()`; edgeloop `verify_package` (lstat walk, private copies of signature
            and key, the library, an independent file-set check, manifest parse).
- register: reference: library sign of the directory, then one `store.put` per file
            (directory store, SHA-256 recorded); edgeloop `Registry.register` (adds the
            package check, staging copy, manifest rewrite, self-verification, SQLite
            records, a journal event).
- fetch:    reference: one `store.get` per file into a directory, then library verify;
            edgeloop `Registry.fetch` (adds digest checks against the database and the
            strict verification, atomic rename).

Rounds alternate which side goes first. Medians of the per-round times and of the
per-round ratios (edgeloop / reference; 1.0 means no overhead). Writes
benchmarks/results/registry.json and registry.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from model_signing import signing, verifying  # noqa: E402

from edgeloop.journal import SQLiteJournal  # noqa: E402
from edgeloop.journal.base import JournalSink  # noqa: E402
from edgeloop.model.manifest import MANIFEST_NAME, SIGNATURE_NAME  # noqa: E402
from edgeloop.registry import Registry, generate_signing_key, sign_package  # noqa: E402
from edgeloop.registry.signing import verify_package  # noqa: E402
from edgeloop.store import LocalStore  # noqa: E402
from edgeloop.testing.serving import make_package  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def large_package(root: Path, mib: int) -> Path:
    """A real small package whose model file is padded to `mib` MiB of random bytes (signing
    and verification only hash bytes, they never parse the model)."""
    pkg = make_package(root, name="big", version=1)
    with open(pkg / "model.onnx", "ab") as handle:
        for _ in range(mib):
            handle.write(os.urandom(1024 * 1024))
    return pkg


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_package(pkg: Path, work: Path, rounds: int, key: Path, public: str) -> dict[str, Any]:
    pub_file = work / "pub.pem"
    pub_file.write_text(public)
    results: dict[str, dict[str, list[float]]] = {}

    def record(op: str, side: str, seconds: float) -> None:
        results.setdefault(op, {"reference": [], "edgeloop": []})[side].append(seconds)

    ref_pkg = work / "ref-pkg"
    shutil.copytree(pkg, ref_pkg)
    (ref_pkg / SIGNATURE_NAME).unlink(missing_ok=True)
    ref_sig = work / "ref.sig"  # the library's default layout: signature outside the model
    store = LocalStore(work / "store")
    journal = SQLiteJournal(work / "journal.db")
    registry = Registry(work / "registry.db", store, public_key=public, signing_key=key,
                        events=JournalSink(journal))  # fmt: skip

    def ref_sign() -> None:
        signing.Config().use_elliptic_key_signer(private_key=key).sign(ref_pkg, ref_sig)

    def ref_verify() -> None:
        verifying.Config().use_elliptic_key_verifier(public_key=pub_file).verify(ref_pkg, ref_sig)

    counter = iter(range(1_000_000))

    def ref_register() -> None:
        ref_sign()
        prefix = f"ref/{next(counter)}/"
        for path in sorted(ref_pkg.iterdir()):
            with open(path, "rb") as handle:
                store.put(prefix + path.name, handle)
        with open(ref_sig, "rb") as handle:
            store.put(prefix + SIGNATURE_NAME, handle)

    def ref_fetch() -> None:
        dest = work / f"ref-fetch-{next(counter)}"
        dest.mkdir()
        prefix = "ref/0/"
        for info in store.list(prefix):
            name = info.key.removeprefix(prefix)
            with store.get(info.key) as reader, open(dest / name, "wb") as out:
                for chunk in reader:
                    out.write(chunk)
        sig = work / f"{dest.name}.sig"
        (dest / SIGNATURE_NAME).rename(sig)
        verifying.Config().use_elliptic_key_verifier(public_key=pub_file).verify(dest, sig)
        shutil.rmtree(dest)

    def el_fetch() -> None:
        dest = work / f"el-fetch-{next(counter)}"
        registry.fetch(pkg_name, 1, dest)
        shutil.rmtree(dest)

    pkg_name = json.loads((pkg / MANIFEST_NAME).read_text())["name"]
    ops: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
        ("sign", ref_sign, lambda: sign_package(pkg, key)),
        ("verify", ref_verify, lambda: verify_package(pkg, public)),
        ("register", ref_register, lambda: registry.register(pkg)),
        ("fetch", ref_fetch, el_fetch),
    ]
    ref_sign()
    sign_package(pkg, key)
    for round_no in range(rounds):
        for op, reference, edgeloop in ops:
            # Which side goes first alternates, so neither always inherits the other's
            # dirty pages and writeback.
            sides = [("reference", reference), ("edgeloop", edgeloop)]
            for side, fn in sides if round_no % 2 == 0 else sides[::-1]:
                record(op, side, timed(fn))
    registry.close()
    journal.close()
    summary: dict[str, Any] = {}
    for op, sides in results.items():
        ratios = [e / r for e, r in zip(sides["edgeloop"], sides["reference"], strict=True)]
        summary[op] = {
            "reference_ms": statistics.median(sides["reference"]) * 1000,
            "edgeloop_ms": statistics.median(sides["edgeloop"]) * 1000,
            "ratio": statistics.median(ratios),
            "rounds": sides,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "registry",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": args.rounds,
        "packages": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-registry-") as tmp:
        root = Path(tmp)
        key = root / "key.pem"
        public = generate_signing_key(key)
        packages = {
            "small (real ONNX)": make_package(root / "small", name="small", version=1),
            f"large ({args.mib} MiB)": large_package(root / "large", args.mib),
        }
        for label, pkg in packages.items():
            size = sum(p.stat().st_size for p in pkg.rglob("*") if p.is_file())
            work = root / f"work-{len(report['packages'])}"
            work.mkdir()
            result = bench_package(pkg, work, args.rounds, key, public)
            report["packages"][label] = {"bytes": size, "ops": result}
            for op, figures in result.items():
                ref_ms, el_ms = figures["reference_ms"], figures["edgeloop_ms"]
                print(f"{label:20} {op:9} reference {ref_ms:9.1f} ms  edgeloop {el_ms:9.1f} ms  "
                      f"ratio {figures['ratio']:.2f}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "registry.json").write_text(json.dumps(report, indent=2))
    lines = ["| package | op | reference | edgeloop | ratio |", "|---|---|---|---|---|"]
    for label, entry in report["packages"].items():
        for op, figures in entry["ops"].items():
            lines.append(f"| {label} | {op} | {figures['reference_ms']:.1f} ms | "
                         f"{figures['edgeloop_ms']:.1f} ms | {figures['ratio']:.2f} |")  # fmt: skip
    (RESULTS / "registry.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
