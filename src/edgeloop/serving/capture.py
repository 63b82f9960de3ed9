"""Capture: sampled inference records and labels, queued in memory, spooled to disk, then
written as Parquet batches to the site's store.

The request path encodes a record's spool line and offers it to a bounded queue (never
blocks, never raises); a writer thread appends to the spool and fsyncs in batches; an
uploader (a process of its own, uploader.py, or a thread for a store given as an object; at
the lowest CPU priority either way) turns sealed spool segments into
`captures/<model>/<site>/<yyyy>/<mm>/<dd>/<batch-id>.parquet` (and `labels/...`) and
deletes a segment only after all its batches are stored.
"""

from __future__ import annotations

import binascii
import io
import logging
import math
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from edgeloop.backoff import Backoff
from edgeloop.model.manifest import MODEL_NAME, MODEL_NAME_PATTERN, Datatype
from edgeloop.serving.metrics import ServingMetrics
from edgeloop.serving.oip import (
    NUMPY_DTYPES,
    SPOOL_BINARY_DATA,
    encode_spool_tensors,
    plain_tensors,
)
from edgeloop.serving.priority import lower_priority
from edgeloop.serving.spool import Spool, sealed_segments
from edgeloop.store import ObjectStore, open_store

log = logging.getLogger(__name__)

# The longest wait between restarts of an uploader process that keeps dying at once.
UPLOADER_RESTART_CAP = 300.0

CAPTURE_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("request_id", pa.string()),
        ("site", pa.string()),
        ("model", pa.string()),
        ("version", pa.string()),
        ("inputs", pa.string()),
        ("outputs", pa.string()),
        ("latency_ms", pa.float64()),
        ("batch_id", pa.string()),
    ]
)
LABEL_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("request_id", pa.string()),
        ("site", pa.string()),
        ("model", pa.string()),
        ("label", pa.string()),
        ("batch_id", pa.string()),
    ]
)


class FullPolicy(StrEnum):
    """What happens when the spool reaches its size limit; drops are always counted."""

    DROP_NEW = "drop-new"  # keep what is spooled, refuse new records
    DROP_OLDEST = "drop-oldest"  # delete the oldest sealed segment to make room


@dataclass(frozen=True)
class CaptureConfig:
    """Where and how much to capture; N records or T seconds close a batch."""

    spool_dir: Path
    site: str
    sample_rate: float = 1.0
    queue_size: int = 10_000
    max_spool_bytes: int = 1024**3
    full_policy: FullPolicy = FullPolicy.DROP_NEW
    # Most lines written and fsynced at once. At 10,000 req/s the writer finds about 1,000
    # waiting every flush_interval: 512 meant two writes and fsyncs each time, 4,096 means
    # one (capture at 100%: 0.87 -> 0.90 of capture off, benchmarks/serving_ab.py capture).
    sync_every: int = 4096
    # Seconds between spool syncs when the queue runs dry. 20 ms cost 30-60 µs of CPU per
    # request at 100% sampling (thread wake-ups and fsyncs); 100 ms, 5-20 µs.
    flush_interval: float = 0.1
    batch_records: int = 10_000
    batch_seconds: float = 60.0
    retry_seconds: float = 5.0


class LineQueue:
    """A bounded queue of spool lines with no lock and no wake-up on put: the request path
    appends (atomic under the GIL) and the writer thread drains it on its own schedule."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[bytes] = deque()

    def offer(self, item: bytes) -> bool:
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        return True

    def drain(self, limit: int) -> list[bytes]:
        items: list[bytes] = []
        while self._items and len(items) < limit:
            items.append(self._items.popleft())
        return items

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items


@dataclass(frozen=True)
class UploaderCommand:
    """Where an uploader process (uploader.py) writes one site's capture batches."""

    store_url: str
    site: str
    journal: str | None = None  # a journal URL or path; each batch is journaled there
    retry_seconds: float = 5.0
    # While the serving CPUs are busy, uploads wait up to defer_seconds (0: never) and while
    # the spool holds less than defer_bytes (uploader.py).
    defer_seconds: float = 0.0
    defer_bytes: int = 0
    busy_above: float = 0.9  # the busy share of the CPUs that makes uploads wait

    def argv(self, spool_dir: Path) -> list[str]:
        args = [sys.executable, "-m", "edgeloop.serving.uploader", "--spool", str(spool_dir),
                "--store", self.store_url, "--site", self.site,
                "--retry-seconds", str(self.retry_seconds),
                "--defer-seconds", str(self.defer_seconds),
                "--defer-bytes", str(self.defer_bytes),
                "--busy-above", str(self.busy_above)]  # fmt: skip
        if self.journal is not None:
            args += ["--journal", self.journal]
        return args


def open_capture_store(url: str, site: str, journal: str | None) -> ObjectStore:
    """The store capture batches go to; with a journal, each batch is journaled too."""
    from edgeloop.journal import JournalSink, open_journal
    from edgeloop.store.journaled import JournaledStore

    store = open_store(url)
    if journal is not None:
        return JournaledStore(store, JournalSink(open_journal(journal)), site)
    return store


class CaptureWriter:
    """Owns the queue, the spool, the writer thread and the uploader.

    `target` says where sealed segments go: an UploaderCommand has a process of its own
    upload them (uploader.py); a store object (one with no URL, as in tests) has a thread of
    this process do it.
    """

    def __init__(
        self,
        config: CaptureConfig,
        target: ObjectStore | UploaderCommand,
        metrics: ServingMetrics,
        *,
        start: bool = True,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.uploader = target if isinstance(target, UploaderCommand) else None
        self.store = None if isinstance(target, UploaderCommand) else target
        self._process: subprocess.Popen[bytes] | None = None
        self._process_lock = threading.Lock()
        self.uploads_deferred = False  # the uploader process waits for idle CPUs
        self.queue = LineQueue(config.queue_size)
        self.spool = Spool(config.spool_dir)
        self._stop = threading.Event()
        self._sealed = threading.Event()
        self._sealed.set()  # recovered segments wait for upload
        upload = self._upload_loop if self.uploader is None else self._follow_uploader
        self._threads = [
            threading.Thread(target=self._write_loop, name="capture-spool", daemon=True),
            threading.Thread(target=upload, name="capture-upload", daemon=True),
        ]
        self._spool_bytes = self.spool.size_bytes()
        self.metrics.spool_bytes.set(self._spool_bytes)
        if start:
            self.start()

    def start(self) -> None:
        """Start the spool writer and uploader threads (and the uploader process)."""
        if self.uploader is not None:
            self._start_process()
        for thread in self._threads:
            thread.start()

    def _start_process(self) -> None:
        assert self.uploader is not None
        self._process = subprocess.Popen(
            self.uploader.argv(self.spool.dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    # -- the request path: cheap and never raising --------------------------------------
    def sampled(self) -> bool:
        rate = self.config.sample_rate
        return rate >= 1.0 or (rate > 0 and random.random() < rate)  # noqa: S311

    def offer(self, record: dict[str, Any]) -> bool:
        """Queue a record's spool line; False (and counted) when the queue is full.

        The line is encoded here, on the request's thread, so the writer thread only writes:
        encoding a thousand records on the writer made it and the event loop trade the GIL
        at every syscall of either (capture at 100% cost 17% of throughput under load for
        1% more server CPU per request)."""
        try:
            line = spool_line(record)
        except Exception as exc:  # capture never fails a request
            return self._unserializable(exc)
        return self._queue(line)

    def offer_inference(
        self, request_id: str, model: str, version: int, inputs: dict[str, np.ndarray],
        outputs: bytes, latency_ms: float,
    ) -> bool:  # fmt: skip
        """`offer` for a served request, its outputs already encoded (the request path's form:
        the same line as `offer` of the record, with no record dict built and taken apart)."""
        try:
            meta = orjson.dumps({
                "request_id": request_id, "time": time.time(), "model": model,
                "version": version, "latency_ms": latency_ms,
            })  # fmt: skip
            line = b"%b\t%b\t%b\n" % (meta, encode_spool_tensors(inputs), outputs)
        except Exception as exc:  # capture never fails a request
            return self._unserializable(exc)
        return self._queue(line)

    def _unserializable(self, exc: Exception) -> bool:
        log.warning("capture record not serializable, dropped: %s", exc)
        self.metrics.dropped.labels("unserializable").inc()
        return False

    def _queue(self, line: bytes) -> bool:
        if self.queue.offer(line):
            return True
        self.metrics.dropped.labels("queue_full").inc()
        return False

    # -- the writer thread -------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            stopping = self._stop.is_set()
            records = self.queue.drain(self.config.sync_every)
            if records:
                self._spool(records)
            self.metrics.capture_queue.set(self.queue.qsize())
            if self._due():
                self._seal()
            if stopping and self.queue.empty():
                self._seal()
                return
            if not records or self.queue.empty():
                # Polling, not waking per record: the request path never signals this thread.
                self._stop.wait(self.config.flush_interval)

    def _spool(self, lines: list[bytes]) -> None:
        size = sum(len(line) for line in lines)
        count = len(lines)
        while self._spool_bytes + size > self.config.max_spool_bytes:
            if self.config.full_policy == FullPolicy.DROP_OLDEST:
                dropped = self.spool.drop_oldest()
                if dropped:
                    self.metrics.dropped.labels("spool_full_oldest").inc(dropped)
                    self._spool_bytes = self.spool.size_bytes()
                    continue
            self.metrics.dropped.labels("spool_full").inc(len(lines))
            return
        # A segment holds at most batch_records lines: a burst drained at once still becomes
        # batches of N records, as documented, and each full one is sealed (and synced) now.
        while lines:
            room = max(1, self.config.batch_records - self.spool.open_records)
            part, lines = lines[:room], lines[room:]
            self.spool.append(part)
            if self.spool.open_records >= self.config.batch_records:
                self._seal()
        self.spool.sync()
        self._spool_bytes += size
        self.metrics.spool_bytes.set(self._spool_bytes)
        self.metrics.captured.inc(count)

    def _due(self) -> bool:
        if not self.spool.open_records:
            return False
        return (
            self.spool.open_records >= self.config.batch_records
            or time.monotonic() - self.spool.opened_at >= self.config.batch_seconds
        )

    def _seal(self) -> None:
        if self.spool.seal() is not None:
            self._sealed.set()
            self._poke()

    def _poke(self) -> None:
        """Tell the uploader process a segment was sealed."""
        with self._process_lock:
            process = self._process
            if process is None or process.stdin is None:
                return
            with suppress(OSError):  # it died: _follow_uploader starts another
                process.stdin.write(b"\n")
                process.stdin.flush()

    # -- the uploader process ----------------------------------------------------------
    def _follow_uploader(self) -> None:
        """Count what the uploader process reports; start another if it dies before stop.

        Restarts back off (retry_seconds, doubling up to UPLOADER_RESTART_CAP, jittered) while
        each replacement dies again without uploading, e.g. a store URL that cannot work.
        """
        backoff = Backoff(base=self.config.retry_seconds,
                          cap=max(self.config.retry_seconds, UPLOADER_RESTART_CAP))  # fmt: skip
        failures = 0
        while True:
            with self._process_lock:
                process = self._process
            if process is None or process.stdout is None:
                return  # stopped
            started = time.monotonic()
            for line in process.stdout:
                try:
                    report = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if "uploaded" in report:
                    failures = 0  # it worked: the next death is a fresh problem
                    self._uploaded(report["segment"], report["uploaded"])
                elif "error" in report:
                    self._upload_failed(report["error"])
                elif "deferred" in report:
                    self.uploads_deferred = bool(report["deferred"])
                    self.metrics.uploads_deferred.set(1 if self.uploads_deferred else 0)
            process.wait()
            with self._process_lock:
                if self._process is not process:
                    continue  # stopped meanwhile
            if time.monotonic() - started >= UPLOADER_RESTART_CAP:
                failures = 0
            delay = backoff.delay(failures)
            failures += 1
            log.warning("the capture uploader process exited (%s); starting another in %.1f s",
                        process.returncode, delay)  # fmt: skip
            self._stop.wait(delay)  # no tight loop if it cannot start
            with self._process_lock:
                if self._process is process:
                    self._start_process()

    # -- the uploader thread -----------------------------------------------------------
    def _upload_loop(self) -> None:
        # Batches can wait, requests cannot: at the lowest priority the uploader takes the
        # serving core only when requests leave it idle (capture at 100%: about 7% more
        # throughput on one core). Under sustained saturation the spool absorbs the backlog,
        # bounded by max_spool_bytes and its full policy.
        lower_priority()
        while not self._stop.is_set():
            self._sealed.wait(timeout=0.5)
            self._sealed.clear()
            if not self.upload_sealed():
                self._stop.wait(self.config.retry_seconds)
                self._sealed.set()

    def upload_sealed(self) -> bool:
        """Upload every sealed segment, oldest first; False if one failed (it stays)."""
        assert self.store is not None  # the thread path
        error = upload_sealed_segments(self.spool.dir, self.store, self.config.site,
                                       self._uploaded)  # fmt: skip
        if error is not None:
            self._upload_failed(error)
        return error is None

    def _uploaded(self, segment: str, records: int) -> None:
        self._spool_bytes = self.spool.size_bytes()
        self.metrics.spool_bytes.set(self._spool_bytes)
        self.metrics.uploaded.inc(records)

    def _upload_failed(self, error: str) -> None:
        log.warning("capture upload failed, will retry: %s", error)
        self.metrics.upload_errors.inc()

    def close(self, upload_timeout: float = 5.0) -> None:
        """Spool what is queued, seal, and try to upload for up to `upload_timeout` seconds."""
        self._stop.set()
        if self._threads[0].is_alive():
            self._threads[0].join()
            if self._process is not None:
                self._stop_process(upload_timeout)
            self._threads[1].join(timeout=upload_timeout)
        deadline = time.monotonic() + upload_timeout
        while self.uploader is None and self.spool.sealed() and time.monotonic() < deadline:
            if not self.upload_sealed():
                break
        self.spool.close()

    def _stop_process(self, timeout: float) -> None:
        """End of input: the uploader makes a last pass and exits (or is stopped)."""
        with self._process_lock:
            process, self._process = self._process, None
        if process is None:
            return
        with suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:  # segments left stay on disk for the next start
            process.terminate()
            process.wait()


TENSOR_FIELDS = ("inputs", "outputs")


def spool_line(record: dict[str, Any]) -> bytes:
    """One spool line: the record's small fields as JSON, then its inputs and outputs as
    OIP tensor JSON, tab-separated (JSON never holds a raw tab or newline).

    Why not one JSON document: the uploader would have to parse every float of every tensor
    back and print it again for Parquet; kept apart, the outputs' JSON text (already encoded
    for the response) goes into the Parquet column as it is, which made uploading about 4x
    cheaper per record. Tensors given as arrays (the inputs) are written in the spool's
    binary form (`encode_spool_tensors`) and printed as JSON by the uploader."""
    meta = dict(record)  # one copy and two pops: cheaper than filtering every key
    inputs = meta.pop("inputs", None)
    outputs = meta.pop("outputs", None)
    if inputs is None and outputs is None:
        return orjson.dumps(meta) + b"\n"
    parts = [orjson.dumps(meta)]
    for value in (inputs, outputs):
        if isinstance(value, bytes):  # already OIP tensor JSON (the response's outputs)
            parts.append(value)
            continue
        if isinstance(value, dict):
            parts.append(encode_spool_tensors(value))
            continue
        parts.append(
            orjson.dumps([] if value is None else value, option=orjson.OPT_SERIALIZE_NUMPY)
        )
    return b"\t".join(parts) + b"\n"


def parse_spool_line(line: bytes) -> dict[str, Any]:
    """A record from a spool line; inputs and outputs stay JSON text. Raises ValueError."""
    parts = line.rstrip(b"\n").split(b"\t")
    if len(parts) not in (1, 1 + len(TENSOR_FIELDS)):
        raise ValueError(f"a spool line has {len(parts)} fields")
    record = orjson.loads(parts[0])
    if not isinstance(record, dict):
        raise ValueError("a spool line's record is not an object")
    for field, text in zip(TENSOR_FIELDS, parts[1:], strict=False):
        record[field] = plain_tensors(text)
    return record


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def upload_sealed_segments(
    spool_dir: Path, store: ObjectStore, site: str, uploaded: Callable[[str, int], None]
) -> str | None:
    """Upload every sealed segment of a spool directory, oldest first, deleting each once
    stored and then calling `uploaded(segment name, records)`; the error that stopped the
    pass (that segment stays), or None. Used by the uploader thread and process alike."""
    for segment in sealed_segments(spool_dir):
        try:
            count = upload_segment(segment, store, site)
        except FileNotFoundError:
            continue  # dropped by the spool writer to make room meanwhile
        except Exception as exc:  # the store is down or refused: keep the segment
            return f"{segment.name}: {type(exc).__name__}: {exc}"
        with suppress(FileNotFoundError):
            segment.unlink()
        uploaded(segment.name, count)
    return None


def upload_segment(segment: Path, store: ObjectStore, site: str) -> int:
    """Write a sealed segment's records as Parquet batches; return how many records."""
    batch_id = segment.stem
    data = segment.read_bytes()
    data = data[: data.rfind(b"\n") + 1]  # complete lines only
    try:
        tables, count = _columnar_tables(data, site, batch_id)
    except Exception as exc:  # no line may hold the spool up
        # A line pyarrow cannot take (a damaged one, a record of an older layout): the
        # record-by-record path reads what it can and skips the rest with a warning.
        log.debug("%s: reading record by record (%s)", segment, exc)
        tables, count = _record_tables(data.splitlines(keepends=True), site, batch_id, segment)
    for (root, model, day), table in sorted(tables.items()):
        key = f"{root}/{model}/{site}/{day}/{batch_id}.parquet"
        store.put(key, _parquet(table))
    return count


GroupKey = tuple[str, str, str]  # root (captures or labels), model, yyyy/mm/dd

# The small fields of a capture line; other fields (e.g. `kind`) are ignored here.
_META_SCHEMA = pa.schema(
    [
        ("time", pa.float64()),
        ("request_id", pa.string()),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("latency_ms", pa.float64()),
    ]
)


def _columnar_tables(data: bytes, site: str, batch_id: str) -> tuple[dict[GroupKey, pa.Table], int]:
    """The segment's capture lines parsed column-wise by pyarrow (about 3x less CPU than
    record by record, which matters on a serving core); lines of another shape (labels)
    take the record-by-record path. Raises pa.ArrowException for lines it cannot take."""
    others: list[bytes] = []

    def other(row: Any) -> str:  # one field: a label or a record without tensors
        others.append(row.text.encode() + b"\n")
        return "skip"

    tables: dict[GroupKey, list[pa.Table]] = defaultdict(list)
    count = 0
    lines = _split_lines(data, other) if data else None
    if lines is not None and lines.num_rows:
        table = _capture_table(lines, site, batch_id)
        pair, groups = _model_days(table.column("model"), table.column("time"))
        for pair_key, (model, day) in groups.items():
            part = table if pair is None else table.filter(pc.equal(pair, pair_key))
            tables[("captures", model, day)].append(part)
        count += lines.num_rows
    if others:
        rest, more = _record_tables(others, site, batch_id, None)
        count += more
        for key, table in rest.items():
            tables[key].append(table)
    return {key: pa.concat_tables(parts) for key, parts in tables.items()}, count


def _split_lines(data: bytes, other: Callable[[Any], str]) -> pa.Table:
    """A segment's lines as three string columns (meta, inputs, outputs); lines with
    another number of fields go to `other`."""
    return pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(
            column_names=["meta", *TENSOR_FIELDS], use_threads=False, block_size=1 << 24
        ),
        parse_options=pa_csv.ParseOptions(
            delimiter="\t", quote_char=False, escape_char=False, invalid_row_handler=other
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in ("meta", *TENSOR_FIELDS)}
        ),
    )


def _capture_table(lines: pa.Table, site: str, batch_id: str) -> pa.Table:
    """The capture rows of split lines: the meta column parsed as JSON, in CAPTURE_SCHEMA."""
    metas = "\n".join(lines.column("meta").to_pylist()).encode()
    meta = pa_json.read_json(
        io.BytesIO(metas),
        read_options=pa_json.ReadOptions(use_threads=False, block_size=1 << 24),
        parse_options=pa_json.ParseOptions(
            explicit_schema=_META_SCHEMA, unexpected_field_behavior="ignore"
        ),
    )
    if meta.num_rows != lines.num_rows:
        raise ValueError("meta and tensor fields do not pair up")
    rows = lines.num_rows
    table = pa.table(
        {
            "time": _utc_micros(meta.column("time")),
            "request_id": meta.column("request_id"),
            "site": pa.repeat(pa.scalar(site, pa.string()), rows),
            "model": meta.column("model"),
            "version": pc.cast(meta.column("version"), pa.string()),
            "inputs": _plain_column(lines.column("inputs")),
            "outputs": _plain_column(lines.column("outputs")),
            "latency_ms": pc.fill_null(meta.column("latency_ms"), 0.0),
            "batch_id": pa.repeat(pa.scalar(batch_id, pa.string()), rows),
        },
        schema=CAPTURE_SCHEMA,
    )
    if table.column("request_id").null_count or table.column("model").null_count:
        raise ValueError("a capture line lacks its request_id or model")
    if not pc.all(pc.match_substring_regex(table.column("model"), MODEL_NAME_PATTERN)).as_py():
        raise ValueError("a capture line's model is not a model name")
    return table


def _plain_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A tensor column with the spool's binary tensors printed as JSON (`plain_tensors`);
    rows without them are kept as they are. Raises ValueError for a damaged one."""
    binary = pc.match_substring(column, SPOOL_BINARY_DATA)
    if not pc.any(binary).as_py():
        return column
    texts = column.to_pylist()
    # Rows of one numeric tensor sharing a head (name, datatype, shape): the usual capture.
    # Their numbers are printed by one orjson call per head, not one plain_tensors per row:
    # a record cost the uploader 9.3 µs that way, 5.0 µs this way (3.4 µs when the spool
    # held the numbers as JSON).
    first = texts[0].find(SPOOL_BINARY_DATA) if texts[0] else -1
    head = texts[0][: first + len(SPOOL_BINARY_DATA)] if first >= 0 else ""
    groups: dict[str, list[int]] = defaultdict(list)
    if first >= 0 and pc.all(pc.starts_with(column, head)).as_py():
        groups[head] = list(range(len(texts)))  # one head for all: no search row by row
    else:
        for index, (text, found) in enumerate(zip(texts, binary.to_pylist(), strict=True)):
            if found:
                groups[text[: text.find(SPOOL_BINARY_DATA) + len(SPOOL_BINARY_DATA)]].append(index)
    for head, rows in groups.items():
        printed = _print_rows(head, [texts[i] for i in rows])
        for index, text in zip(rows, printed, strict=True):
            texts[index] = text
    return pa.chunked_array([pa.array(texts, pa.string())])


def _print_rows(head: str, texts: list[str]) -> list[str]:
    """`plain_tensors` of each text, all of which start with `head`: texts of one tensor of
    a datatype orjson prints from an array are printed together, anything else one by one."""
    spec = _printable_head(head)
    if spec is None or not all(text.endswith('"}]') for text in texts):
        return [plain_tensors(text) for text in texts]
    dtype, size = spec
    start = len(head)
    try:
        # Strict base64 refuses a quote: a text with a second tensor goes one by one below.
        parts = [binascii.a2b_base64(text[start:-3], strict_mode=True) for text in texts]
    except binascii.Error:
        parts = []
    if not parts or any(len(part) != size for part in parts):
        return [plain_tensors(text) for text in texts]  # raises ValueError where damaged
    values = np.frombuffer(b"".join(parts), dtype=dtype.newbyteorder("<"))
    native = values.astype(dtype, copy=False).reshape(len(texts), -1)
    printed = orjson.dumps(native, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    json_head = head[:-1]  # `"data":` without the string's opening quote
    return [f"{json_head}[{row}]}}]" for row in printed[2:-2].split("],[")]


def _printable_head(head: str) -> tuple[np.dtype[Any], int] | None:
    """The dtype and data size in bytes of a one-tensor head as encode_spool_tensors writes
    it, for a datatype orjson prints from an array (not FP16 or BYTES); None otherwise.

    Only that exact head: then the rows read as plain_tensors would print each (it keeps no
    other keys, checks the name, and prints the array's own shape)."""
    try:
        (spec,) = orjson.loads(head[:-1] + "null}]")  # the head with its data left out
        datatype = Datatype(spec["datatype"])
        shape = spec["shape"]
        canonical = orjson.dumps({k: spec[k] for k in ("name", "datatype", "shape")})
    except (ValueError, KeyError, TypeError):
        return None
    if (
        head != f'[{canonical[:-1].decode()},"data":"'
        or datatype in (Datatype.FP16, Datatype.BYTES)
        or not isinstance(shape, list)
        or any(type(dim) is not int for dim in shape)
    ):
        return None
    dtype = NUMPY_DTYPES[datatype]
    size = math.prod(shape) * dtype.itemsize
    return (dtype, size) if size > 0 else None


MICROS_PER_DAY = 86_400_000_000


def _model_days(
    models: pa.ChunkedArray, times: pa.ChunkedArray
) -> tuple[pa.ChunkedArray | None, dict[str, tuple[str, str]]]:
    """Each row's (model, UTC day) as one key (None when all rows share one), and the
    distinct keys' (model, yyyy/mm/dd).

    Found column-wise from whole days since the epoch: `strftime` on every row took a third
    of the upload, and to_pylist of every row would cost more than the parse."""
    micros = times.cast(pa.int64())
    bounds = pc.min_max(micros)
    first, last = bounds["min"].as_py(), bounds["max"].as_py()
    if first // MICROS_PER_DAY == last // MICROS_PER_DAY and pc.count_distinct(models).as_py() == 1:
        # The usual segment: one model, one day; no key per row needed.
        model = models[0].as_py()
        day = _day_text(first // MICROS_PER_DAY)
        return None, {f"{model}\n{day}": (model, day)}
    # Days since the epoch, rounded down (also before 1970, where integer division would
    # round toward zero); exact in a double for any time a clock gives.
    days = pc.floor(pc.divide(pc.cast(micros, pa.float64()), MICROS_PER_DAY))
    pair = pc.binary_join_element_wise(
        models, pc.cast(pc.cast(days, pa.int64()), pa.string()), "\n"
    )
    groups = {}
    for key in pc.unique(pair).to_pylist():
        model, number = key.split("\n")
        groups[key] = (model, _day_text(int(number)))
    return pair, groups


def _day_text(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86400, UTC).strftime("%Y/%m/%d")


def _utc_micros(seconds: pa.ChunkedArray) -> pa.ChunkedArray:
    """Float seconds to UTC microsecond timestamps exactly as `datetime.fromtimestamp` rounds
    them (the fraction, times 1e6, half to even), so both upload paths write the same bytes."""
    whole = pc.floor(seconds)
    micros = pc.round(pc.multiply(pc.subtract(seconds, whole), 1e6), round_mode="half_to_even")
    total = pc.add(pc.multiply(pc.cast(whole, pa.int64()), 1_000_000), pc.cast(micros, pa.int64()))
    return total.cast(pa.timestamp("us", tz="UTC"))


def _record_tables(
    lines: Iterable[bytes], site: str, batch_id: str, segment: Path | None
) -> tuple[dict[GroupKey, pa.Table], int]:
    """Parse lines one record at a time, skipping (and logging) the ones that are damaged."""
    groups: dict[GroupKey, list[dict[str, Any]]] = defaultdict(list)
    count = 0
    days: dict[int, str] = {}  # strftime per record cost more than the Parquet encoding
    for line in lines:
        try:
            record = parse_spool_line(line)
            root = "labels" if record.get("kind") == "label" else "captures"
            _check_record(root, record)
            day_number = int(record["time"] // 86400)
            day = days.get(day_number)
            if day is None:
                day = days[day_number] = _day_text(day_number)
        except Exception as exc:  # a damaged line is skipped, never retried
            log.warning("%s: skipping a corrupt spool line (%s)", segment or batch_id, exc)
            continue
        groups[(root, record["model"], day)].append(record)
        count += 1
    tables = {key: batch_table(key[0], records, site, batch_id) for key, records in groups.items()}
    return tables, count


def _check_record(root: str, record: dict[str, Any]) -> None:
    """Raise ValueError unless `record` has what its batch table needs (a damaged line that
    parses as JSON must be skipped here, not fail the whole segment's upload)."""
    model = record.get("model")
    if not isinstance(model, str) or not MODEL_NAME.match(model):
        raise ValueError(f"model {model!r} is not a model name")
    if not isinstance(record.get("request_id"), str):
        raise ValueError("no request_id")
    if not isinstance(record.get("time"), int | float):
        raise ValueError("no time")
    if root == "captures":
        if "version" not in record:
            raise ValueError("no version")
        float(record.get("latency_ms", 0.0))


def encode_batch(root: str, records: Iterable[dict[str, Any]], site: str, batch_id: str) -> bytes:
    """Parquet bytes of one batch; the same records always give the same bytes."""
    return _parquet(batch_table(root, records, site, batch_id))


def batch_table(root: str, records: Iterable[dict[str, Any]], site: str, batch_id: str) -> pa.Table:
    """The Arrow table of one batch of records (capture or label schema)."""
    rows = list(records)
    times = [datetime.fromtimestamp(r["time"], UTC) for r in rows]
    if root == "labels":
        columns: dict[str, list[Any]] = {
            "time": times,
            "request_id": [r["request_id"] for r in rows],
            "site": [site] * len(rows),
            "model": [r["model"] for r in rows],
            "label": [_text(r.get("label")) for r in rows],
            "batch_id": [batch_id] * len(rows),
        }
        schema = LABEL_SCHEMA
    else:
        columns = {
            "time": times,
            "request_id": [r["request_id"] for r in rows],
            "site": [site] * len(rows),
            "model": [r["model"] for r in rows],
            "version": [str(r["version"]) for r in rows],
            "inputs": [_json_text(r["inputs"]) for r in rows],
            "outputs": [_json_text(r["outputs"]) for r in rows],
            "latency_ms": [float(r.get("latency_ms", 0.0)) for r in rows],
            "batch_id": [batch_id] * len(rows),
        }
        schema = CAPTURE_SCHEMA
    return pa.table(columns, schema=schema)


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
