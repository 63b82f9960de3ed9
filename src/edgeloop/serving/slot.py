"""Hot swap: a new version loads and warms beside the old one, then takes traffic atomically.

All switching happens on the event loop thread, so a request sees either the old version or
the new one, never neither; the old one is unloaded once its in-flight requests finish. A
version that fails to load, warm up or match its schema never takes traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeloop.errors import PackageError
from edgeloop.model.manifest import ModelManifest
from edgeloop.serving.batching import BatchingConfig, MicroBatcher
from edgeloop.serving.oip import InputSchema, check_outputs, sample_arrays
from edgeloop.serving.package import Verifier, load_package
from edgeloop.serving.runtimes import ModelRuntime, RuntimeOptions, open_runtime

log = logging.getLogger(__name__)


class ModelVersion:
    """One loaded version: manifest, runtime, its batcher, and how many requests use it."""

    def __init__(
        self,
        manifest: ModelManifest,
        runtime: ModelRuntime,
        path: Path,
        batching: BatchingConfig,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.runtime = runtime
        self.path = path
        self.in_flight = 0
        self.loaded_at = time.time()
        self.version: int = manifest.version
        # Prepared once: what each request is parsed against and the response header it gets.
        self.input_schema = InputSchema(manifest.inputs)
        self.version_header = str(manifest.version).encode()
        batchable = all(spec.shape and spec.shape[0] == -1 for spec in manifest.inputs)
        self.batcher = MicroBatcher(
            runtime.predict, batching, batchable=batchable, on_batch=on_batch
        )


@dataclass
class SwapOutcome:
    """What the last load attempt of a model did; the fleet agent reads it from /v2/status."""

    version: int | None
    ok: bool
    error: str | None
    path: str
    time: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "ok": self.ok,
            "error": self.error,
            "path": self.path,
            "time": self.time,
        }


def prepare_version(
    path: Path,
    *,
    expected_name: str | None,
    verify: Verifier | None,
    runtime_options: RuntimeOptions,
    batching: BatchingConfig,
    on_batch: Callable[[int], None] | None = None,
) -> ModelVersion:
    """Load, warm and check one package; blocking, so call it off the event loop."""
    package = load_package(path, verify=verify)
    manifest = package.manifest
    if expected_name is not None and manifest.name != expected_name:
        raise PackageError(f"{path}: package is model {manifest.name!r}, not {expected_name!r}")
    runtime = open_runtime(package, runtime_options)
    try:
        warm_up(runtime, manifest)
    except Exception:
        runtime.close()
        raise
    return ModelVersion(manifest, runtime, package.root, batching, on_batch)


def warm_up(runtime: ModelRuntime, manifest: ModelManifest) -> None:
    """Run the sample input through the model and check the outputs against the schema."""
    if not manifest.sample_input:
        raise PackageError(f"{manifest.ref}: no sample_input to warm up with; add one")
    try:
        inputs = sample_arrays(manifest.sample_input, manifest.inputs)
        rows = int(next(iter(inputs.values())).shape[0])
        for _ in range(3):  # the first calls allocate; the later ones show it stays sane
            outputs = runtime.predict(inputs)
        check_outputs(outputs, manifest.outputs, rows)
    except PackageError:
        raise
    except Exception as exc:
        raise PackageError(f"{manifest.ref}: warm-up failed: {exc}") from None


class HotSwapSlot:
    """The serving slot of one model name: at most one active version at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.active: ModelVersion | None = None
        self.last_outcome: SwapOutcome | None = None
        self.swaps_ok = 0
        self.swaps_failed = 0
        self.lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    def acquire(self) -> ModelVersion | None:
        """The active version, counted as in use until `release`."""
        current = self.active
        if current is not None:
            current.in_flight += 1
        return current

    @staticmethod
    def release(version: ModelVersion) -> None:
        version.in_flight -= 1

    def switch(self, new: ModelVersion | None) -> ModelVersion | None:
        """Make `new` the active version (None unloads); retire the old one in the background."""
        old, self.active = self.active, new
        if old is not None and old is not new:
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return old

    @staticmethod
    async def _retire(old: ModelVersion) -> None:
        while old.in_flight > 0:
            await asyncio.sleep(0.005)
        await old.batcher.close()
        old.runtime.close()
        log.info("unloaded %s", old.manifest.ref)

    async def drain(self) -> None:
        """Wait until every retired version is unloaded."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)
