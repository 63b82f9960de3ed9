"""S3 store benchmark: edgeloop's S3Store beside a raw obstore put/get loop, same server.

Run: .venv/bin/python benchmarks/store_s3.py [--rounds 5] [--quick]

Both sides talk to one `rclone serve s3` on loopback, one object at a time (no concurrency
on either side). Raw obstore puts bytes with no metadata and reads them back whole; edgeloop
hashes every object, records the SHA-256 as metadata (and, for the large streamed puts,
checks it against an expected digest) and streams reads in 1 MiB chunks. Rounds alternate
reference and edgeloop (A B A B ...); the figure is the median of the per-round ratios.
Writes benchmarks/results/store_s3.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import obstore  # noqa: E402
from obstore.store import S3Store as RawS3  # noqa: E402

from edgeloop.store import open_store  # noqa: E402
from edgeloop.store.s3 import S3Store  # noqa: E402
from edgeloop.testing.s3server import S3Server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MiB = 1024 * 1024


def raw_store(server: S3Server, bucket: str) -> RawS3:
    server.make_bucket(bucket)
    return RawS3(
        bucket,
        endpoint=server.endpoint,
        region="us-east-1",
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        client_options={"allow_http": True},
    )


def edgeloop_store(server: S3Server, bucket: str) -> S3Store:
    store = open_store(server.url(bucket))
    assert isinstance(store, S3Store)
    return store


def timed(work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def scenario(name: str, count: int, size: int, server: S3Server, rounds: int) -> dict[str, object]:
    blobs = [i.to_bytes(8, "big") + os.urandom(size - 8) for i in range(count)]
    digests = [hashlib.sha256(b).hexdigest() for b in blobs]
    streamed = size > 8 * MiB

    # Streamed uploads get 1 MiB bytes chunks, as a file read or an S3 download yields them.
    pieces = [[b[i : i + MiB] for i in range(0, len(b), MiB)] for b in blobs] if streamed else []

    def chunks(i: int) -> list[bytes]:
        return pieces[i]

    def raw_put(store: RawS3) -> None:
        for i, blob in enumerate(blobs):
            obstore.put(store, f"o/{i:05d}", chunks(i) if streamed else blob)

    def raw_get(store: RawS3) -> None:
        for i in range(count):
            if streamed:
                for _ in obstore.get(store, f"o/{i:05d}").stream(min_chunk_size=MiB):
                    pass
            else:
                bytes(obstore.get(store, f"o/{i:05d}").bytes())

    def edge_put(store: S3Store) -> None:
        for i, blob in enumerate(blobs):
            if streamed:
                store.put(f"o/{i:05d}", iter(chunks(i)), expected_sha256=digests[i])
            else:
                store.put(f"o/{i:05d}", blob)

    def edge_get(store: S3Store) -> None:
        for i in range(count):
            with store.get(f"o/{i:05d}") as reader:
                if streamed:
                    for _ in reader:
                        pass
                else:
                    reader.read()

    samples: dict[str, list[float]] = {k: [] for k in ("raw_put", "el_put", "raw_get", "el_get")}
    # Warm up both clients (connection pools, the server's directory cache) off the clock.
    raw_put(raw_store(server, f"{name}-warm-raw"))
    edge_put(edgeloop_store(server, f"{name}-warm-el"))
    for r in range(rounds):
        raw, edge = raw_store(server, f"{name}-raw-{r}"), edgeloop_store(server, f"{name}-el-{r}")
        samples["raw_put"].append(timed(lambda raw=raw: raw_put(raw)))  # type: ignore[misc]
        samples["el_put"].append(timed(lambda edge=edge: edge_put(edge)))  # type: ignore[misc]
        samples["raw_get"].append(timed(lambda raw=raw: raw_get(raw)))  # type: ignore[misc]
        samples["el_get"].append(timed(lambda edge=edge: edge_get(edge)))  # type: ignore[misc]
    total_mb = count * size / 1e6

    def summary(ref: str, ours: str) -> dict[str, float]:
        ratios = [r / o for r, o in zip(samples[ref], samples[ours], strict=True)]
        return {
            "reference_s": statistics.median(samples[ref]),
            "edgeloop_s": statistics.median(samples[ours]),
            "reference_mb_s": total_mb / statistics.median(samples[ref]),
            "edgeloop_mb_s": total_mb / statistics.median(samples[ours]),
            "reference_obj_s": count / statistics.median(samples[ref]),
            "edgeloop_obj_s": count / statistics.median(samples[ours]),
            "efficiency": statistics.median(ratios),  # edgeloop speed / raw speed
        }

    return {
        "scenario": name,
        "objects": count,
        "object_bytes": size,
        "rounds": rounds,
        "put": summary("raw_put", "el_put"),
        "get": summary("raw_get", "el_get"),
        "samples_s": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer, smaller objects")
    args = parser.parse_args()
    small = (100, 4096) if args.quick else (400, 4096)
    large = (2, 32 * MiB) if args.quick else (4, 32 * MiB)
    with (
        tempfile.TemporaryDirectory(prefix="edgeloop-bench-s3-") as tmp,
        S3Server(Path(tmp) / "s3") as server,
    ):
        rows = [
            scenario("small-4kib", *small, server, args.rounds),
            scenario("large-32mib", *large, server, args.rounds),
        ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "store_s3.json"
    out.write_text(json.dumps({"benchmark": "store_s3", "results": rows}, indent=2) + "\n")
    print("| scenario | op | raw obstore | edgeloop S3Store | efficiency (median of rounds) |")
    print("|---|---|---|---|---|")
    for row in rows:
        for op in ("put", "get"):
            s = row[op]
            assert isinstance(s, dict)
            if row["object_bytes"] < MiB:  # type: ignore[operator]
                ref, ours = f"{s['reference_obj_s']:.0f} obj/s", f"{s['edgeloop_obj_s']:.0f} obj/s"
            else:
                ref, ours = f"{s['reference_mb_s']:.0f} MB/s", f"{s['edgeloop_mb_s']:.0f} MB/s"
            print(f"| {row['scenario']} | {op} | {ref} | {ours} | {s['efficiency']:.2f} |")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
