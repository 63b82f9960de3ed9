"""The model server: slots by model name, loads and swaps, the repository watcher, capture.

Protocol-free: app.py speaks HTTP over it, and tests can drive it directly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgeloop.errors import PackageError, ServingError
from edgeloop.serving.batching import BatchingConfig
from edgeloop.serving.capture import CaptureConfig, CaptureWriter, UploaderCommand
from edgeloop.serving.config import ServeConfig
from edgeloop.serving.metrics import ServingMetrics
from edgeloop.serving.package import Verifier
from edgeloop.serving.pins import Pins, read_pins, write_pin
from edgeloop.serving.priority import lower_priority
from edgeloop.serving.repository import scan_repository, version_path
from edgeloop.serving.runtimes import RuntimeOptions
from edgeloop.serving.slot import HotSwapSlot, ModelVersion, SwapOutcome, prepare_version
from edgeloop.store import ObjectStore

log = logging.getLogger(__name__)

# Loads run on their own thread at the lowest CPU priority (priority.py, BACKGROUND_NICE):
# building and warming a new session must not take the core from the requests served meanwhile.
_LOADER: ThreadPoolExecutor | None = None


def _loader() -> ThreadPoolExecutor:
    global _LOADER
    if _LOADER is None:
        _LOADER = ThreadPoolExecutor(
            1, thread_name_prefix="edgeloop-load", initializer=lower_priority
        )
    return _LOADER


class ModelServer:
    """Holds one HotSwapSlot per model and loads versions into them."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        capture_target: ObjectStore | UploaderCommand | None = None,
        verify: Verifier | None = None,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or ServingMetrics()
        self.verify = verify
        self.slots: dict[str, HotSwapSlot] = {}
        self.pinned: dict[str, int | None] = {}  # name -> version, or None: unloaded on purpose
        self._applied_pins: Pins = {}  # the shared pins file as last followed
        self.paths: dict[str, Path] = {}  # models loaded from a MODEL_DIR, by name
        self.failed: dict[Path, float] = {}  # version dirs that failed, by their mtime
        self.batching = BatchingConfig(
            enabled=config.batching,
            max_batch_rows=config.max_batch_rows,
            max_delay=config.max_delay_ms / 1000,
            max_queue_rows=config.max_queue_rows,
        )
        self.runtime_options = RuntimeOptions(
            intra_op_threads=config.intra_op_threads,
            inter_op_threads=config.inter_op_threads,
            trusted_types=tuple(config.trusted_types),
        )
        self.capture_target = capture_target  # where captures go; None: no capture
        self.capture: CaptureWriter | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._load_lock = asyncio.Lock()
        self._pin_lock = asyncio.Lock()  # load API calls and following the pins file
        self.started = time.time()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Start capture, load the initial models, and watch the repository."""
        if self.capture_target is not None:
            self.capture = CaptureWriter(
                CaptureConfig(
                    spool_dir=self.config.spool_dir,
                    site=self.config.site,
                    sample_rate=self.config.capture_sample,
                    queue_size=self.config.capture_queue,
                    max_spool_bytes=self.config.spool_max_bytes,
                    full_policy=self.config.spool_full_policy,
                    batch_records=self.config.capture_batch_records,
                    batch_seconds=self.config.capture_batch_seconds,
                ),
                self.capture_target,
                self.metrics,
            )
        for path in self.config.model_dirs:
            try:
                loaded = await self.load_path(path)
                self.paths[loaded.manifest.name] = path
            except ServingError as exc:
                log.error("not serving %s: %s", path, exc)
        if self.config.repository is not None:
            await self.follow_pins()  # a worker (re)started mid-run serves what the others do
            await self.sync_repository()
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching, let in-flight requests finish, flush capture."""
        if self._watcher is not None:
            self._watcher.cancel()
        for slot in self.slots.values():
            slot.switch(None)
            await slot.drain()
        if self.capture is not None:
            await asyncio.to_thread(self.capture.close)

    # -- loading ---------------------------------------------------------------------
    def slot(self, name: str) -> HotSwapSlot:
        if name not in self.slots:
            self.slots[name] = HotSwapSlot(name)
        return self.slots[name]

    async def load_path(self, path: Path, expected_name: str | None = None) -> ModelVersion:
        """Load the package at `path` beside the active version, then switch to it.

        On failure the active version keeps serving and the failure is recorded. Loads run
        one at a time, so the watcher and the API cannot switch out of order.
        """
        async with self._load_lock:
            return await self._load_path(path, expected_name)

    async def _load_path(self, path: Path, expected_name: str | None) -> ModelVersion:
        label = expected_name or path.name
        slot = self.slot(expected_name) if expected_name else None
        try:
            new = await asyncio.get_running_loop().run_in_executor(
                _loader(),
                functools.partial(
                    prepare_version,
                    path,
                    expected_name=expected_name,
                    verify=self.verify,
                    runtime_options=self.runtime_options,
                    batching=self.batching,
                    on_batch=None,
                ),
            )
        except Exception as exc:
            message = str(exc) if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"
            if slot is not None:
                slot.last_outcome = SwapOutcome(None, False, message, str(path))
                slot.swaps_failed += 1
            self.metrics.swaps.labels(label, "failed").inc()
            log.error("load of %s failed; the serving version is unchanged: %s", path, message)
            raise PackageError(message) from None
        name = new.manifest.name
        slot = self.slot(name)
        batch_rows = self.metrics.batch_size.labels(name)
        new.batcher.on_batch = batch_rows.observe
        async with slot.lock:
            old = slot.switch(new)
        if old is not None:
            self.metrics.loaded.labels(name, str(old.version)).set(0)
        self.metrics.loaded.labels(name, str(new.version)).set(1)
        self.metrics.swaps.labels(name, "ok").inc()
        slot.last_outcome = SwapOutcome(new.version, True, None, str(path))
        slot.swaps_ok += 1
        log.info("serving %s from %s", new.manifest.ref, path)
        return new

    async def load(
        self, name: str, version: int | None = None, *, share: bool = True
    ) -> ModelVersion:
        """The repository API's load: a version of `name` (default: newest) or its MODEL_DIR.

        With a repository the pin is `share`d with the other worker processes (pins.py).
        """
        if not share:
            return await self._load(name, version, share=False)
        # One at a time with following the pins file: a pin read before this load must not
        # be applied after it (it would swap straight back).
        async with self._pin_lock:
            return await self._load(name, version, share=True)

    async def _load(self, name: str, version: int | None, *, share: bool) -> ModelVersion:
        repo = self.config.repository
        if repo is not None:
            entries = scan_repository(repo).get(name, [])
            if version is None and entries:
                path = entries[-1].path
            elif version is not None:
                path = version_path(repo, name, version)
                if not path.is_dir():
                    raise PackageError(f"{name} version {version} is not in the repository {repo}")
            elif name in self.paths:
                path = self.paths[name]
            else:
                raise PackageError(f"model {name!r} is not in the repository {repo}")
        elif name in self.paths and version is None:
            path = self.paths[name]
        else:
            raise PackageError(
                f"cannot load {name!r}: start the server with --repository to load by name"
            )
        loaded = await self.load_path(path, expected_name=name)
        if version is None:
            self.pinned.pop(name, None)
        else:
            self.pinned[name] = version
        if share:
            await self._share_pin(name, version, unpin=version is None)
        return loaded

    async def unload(self, name: str, *, share: bool = True) -> None:
        """Stop serving `name`; in-flight requests finish first. The watcher leaves it alone."""
        if not share:
            return await self._unload(name, share=False)
        async with self._pin_lock:
            return await self._unload(name, share=True)

    async def _unload(self, name: str, *, share: bool) -> None:
        slot = self.slots.get(name)
        if slot is None or slot.active is None:
            raise PackageError(f"model {name!r} is not loaded")
        async with slot.lock:
            old = slot.switch(None)
        if old is not None:
            self.metrics.loaded.labels(name, str(old.version)).set(0)
        self.pinned[name] = None
        if share:
            await self._share_pin(name, None)

    async def _share_pin(self, name: str, version: int | None, *, unpin: bool = False) -> None:
        if self.config.repository is not None:
            await asyncio.to_thread(write_pin, self.config.pins_file, name, version, unpin=unpin)

    async def follow_pins(self) -> None:
        """Serve what the load API pinned in another worker process: that version, nothing
        (unloaded), or again the newest (unpinned)."""
        if self.config.repository is None:
            return
        async with self._pin_lock:
            await self._follow_pins()

    async def _follow_pins(self) -> None:
        pins = await asyncio.to_thread(read_pins, self.config.pins_file)
        if pins == self._applied_pins:
            return
        self._applied_pins = pins
        for name, version in sorted(pins.items()):
            if name in self.pinned and self.pinned[name] == version:
                continue
            active = self.slots[name].active if name in self.slots else None
            try:
                if version is None and active is not None:
                    await self.unload(name, share=False)
                elif version is not None and (active is None or active.version != version):
                    await self.load(name, version, share=False)
                else:
                    self.pinned[name] = version
            except ServingError as exc:
                log.error("could not follow the pin %s -> %s: %s", name, version, exc)
        for name in [n for n in self.pinned if n not in pins and n not in self.paths]:
            del self.pinned[name]  # unpinned by another worker: the newest again

    # -- the repository watcher ------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await self.follow_pins()
                await self.sync_repository()
            except Exception:  # keep watching whatever one scan hit
                log.exception("repository scan failed")

    async def sync_repository(self) -> None:
        """Swap each model to its newest version that has not failed before."""
        assert self.config.repository is not None
        found = await asyncio.to_thread(scan_repository, self.config.repository)
        for name, entries in found.items():
            if name in self.pinned:
                continue
            newest = entries[-1]
            active = self.slots[name].active if name in self.slots else None
            if active is not None and active.version >= newest.version:
                continue
            mtime = newest.path.stat().st_mtime
            if self.failed.get(newest.path) == mtime:
                continue
            try:
                await self.load_path(newest.path, expected_name=name)
            except PackageError:
                self.failed[newest.path] = mtime

    # -- status ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What the fleet agent reads: versions serving, last swap outcome, capture health."""
        models = {}
        for name, slot in sorted(self.slots.items()):
            active = slot.active
            models[name] = {
                "active_version": active.version if active else None,
                "path": str(active.path) if active else None,
                "loaded_at": active.loaded_at if active else None,
                "in_flight": active.in_flight if active else 0,
                "pinned": name in self.pinned,
                "swaps_ok": slot.swaps_ok,
                "swaps_failed": slot.swaps_failed,
                "last_swap": slot.last_outcome.as_dict() if slot.last_outcome else None,
            }
        capture = None
        if self.capture is not None:
            capture = {
                "queue_depth": self.capture.queue.qsize(),
                "spool_segments": len(self.capture.spool.sealed()),
                "sample_rate": self.capture.config.sample_rate,
                "uploads_deferred": self.capture.uploads_deferred,
            }
        return {"site": self.config.site, "pid": os.getpid(), "started": self.started,
                "models": models, "capture": capture}  # fmt: skip
