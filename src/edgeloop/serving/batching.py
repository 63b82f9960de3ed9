"""Adaptive micro-batching: requests that wait together run as one model call.

Without a batch delay (`max_delay=0`, the default) a request that finds the queue empty calls
the model at once, inline: on one core with a small model that is fastest. With a delay, the
worker merges queued requests up to `max_batch_rows`, and waits up to `max_delay` for a batch
to fill only while recent batches show concurrent load. The queue is bounded: above
`max_queue_rows` a request is refused with ServerOverloaded (503 + Retry-After).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeloop.errors import ServerOverloaded

Predict = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BatchingConfig:
    """Limits of micro-batching; `enabled=False` calls the model once per request."""

    enabled: bool = True
    max_batch_rows: int = 64
    max_delay: float = 0.0
    max_queue_rows: int = 4096
    retry_after: float = 1.0


@dataclass(slots=True)
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]] = field(repr=False)


class MicroBatcher:
    """Runs `predict` for one model version, merging queued requests along the first axis."""

    def __init__(
        self,
        predict: Predict,
        config: BatchingConfig,
        *,
        batchable: bool,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.predict = predict
        self.config = config
        self.batchable = batchable and config.enabled
        # Only a batch-filling delay makes requests wait for each other; without one, a request
        # that finds the queue empty runs inline (the fastest path, measured in benchmarks/).
        self._waiting_for_batch = self.batchable and config.max_delay > 0
        self.on_batch = on_batch
        self.queue: deque[_Pending] = deque()
        self.queued_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._avg_batch = 1.0

    def infer_now(
        self, inputs: dict[str, np.ndarray], rows: int | None = None
    ) -> dict[str, np.ndarray] | None:
        """The outputs at once when there is nothing to merge with (no hand-off, no await);
        None when the request must go through `infer`. `rows`: the request's, if known."""
        if self.queue or self._waiting_for_batch:
            return None
        outputs = self.predict(inputs)
        if self.on_batch is not None:
            self.on_batch(_rows(inputs) if rows is None else rows)
        return outputs

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs for one request; raises ServerOverloaded when full."""
        outputs = self.infer_now(inputs)
        if outputs is not None:
            return outputs
        return await self.enqueue(inputs)

    async def enqueue(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs of a request that `infer_now` turned away: queued, run in a batch."""
        rows = _rows(inputs)
        if self.queued_rows + rows > self.config.max_queue_rows and self.queue:
            raise ServerOverloaded(
                f"the inference queue is full ({self.queued_rows} rows waiting); retry shortly",
                self.config.retry_after,
            )
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run())
        future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        self.queue.append(_Pending(inputs, rows, future))
        self.queued_rows += rows
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        assert self._wakeup is not None
        while not self._closed:
            if not self.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Let handlers that are already runnable parse and enqueue before we take a batch.
            await asyncio.sleep(0)
            if (
                self.config.max_delay > 0
                and self._avg_batch > 1.5
                and self.queued_rows < self.config.max_batch_rows
            ):
                await asyncio.sleep(self.config.max_delay)
            batch = self._take()
            self._execute(batch)

    def _take(self) -> list[_Pending]:
        first = self.queue.popleft()
        batch = [first]
        rows = first.rows
        if self.batchable:
            while self.queue and rows + self.queue[0].rows <= self.config.max_batch_rows:
                item = self.queue.popleft()
                batch.append(item)
                rows += item.rows
        self.queued_rows -= rows
        self._avg_batch = 0.9 * self._avg_batch + 0.1 * len(batch)
        return batch

    def _execute(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                results = [self.predict(batch[0].inputs)]
            else:
                merged = {
                    name: np.concatenate([p.inputs[name] for p in batch])
                    for name in batch[0].inputs
                }
                outputs = self.predict(merged)
                results = _split(outputs, [p.rows for p in batch])
            if self.on_batch is not None:
                self.on_batch(sum(p.rows for p in batch))
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():  # the client may have gone away
                pending.future.set_result(result)

    async def close(self) -> None:
        """Stop the worker once the queue is empty (in-flight requests finish first)."""
        while self.queue:
            await asyncio.sleep(0.001)
        self._closed = True
        if self._worker is not None and self._wakeup is not None:
            self._wakeup.set()
            await self._worker


def _rows(inputs: dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if first.ndim else 1


def _split(outputs: dict[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
    bounds = np.cumsum(rows)[:-1]
    parts = {name: np.split(array, bounds) for name, array in outputs.items()}
    return [{name: parts[name][i] for name in outputs} for i in range(len(rows))]
