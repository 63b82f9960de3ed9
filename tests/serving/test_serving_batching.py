"""Micro-batching merges concurrent requests, answers each with its own rows, and bounds
its queue."""

from __future__ import annotations

import asyncio

import numpy as np

from edgeloop.errors import ServerOverloaded
from edgeloop.serving.batching import BatchingConfig, MicroBatcher


class CountingModel:
    """Doubles its input and records the batch sizes it was called with."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.calls.append(len(x))
        return {"y": x * 2, "first": x[:, 0].copy()}


def _request(i: int, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 2), float(i), dtype=np.float32)}


async def _many(batcher: MicroBatcher, sizes: list[int]) -> list[dict[str, np.ndarray]]:
    return await asyncio.gather(*(batcher.infer(_request(i, n)) for i, n in enumerate(sizes)))


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    model = CountingModel()
    batcher = MicroBatcher(
        model.predict, BatchingConfig(max_batch_rows=8, max_delay=0.001), batchable=True
    )
    sizes = [1, 3, 1, 2, 1, 1, 4, 1, 1, 1]
    results = asyncio.run(_many(batcher, sizes))
    for i, (n, result) in enumerate(zip(sizes, results, strict=True)):
        np.testing.assert_array_equal(result["y"], np.full((n, 2), 2.0 * i))
        np.testing.assert_array_equal(result["first"], np.full(n, float(i)))
    assert sum(model.calls) == sum(sizes)
    assert len(model.calls) < len(sizes)  # at least some requests were merged
    assert max(model.calls) <= 8


def test_without_a_delay_each_request_runs_inline() -> None:
    model = CountingModel()
    batcher = MicroBatcher(model.predict, BatchingConfig(max_delay=0), batchable=True)
    asyncio.run(_many(batcher, [1, 2, 1]))
    assert model.calls == [1, 2, 1]
    assert not batcher.queue and batcher._worker is None  # no hand-off to a worker task


def test_batching_off_calls_once_per_request() -> None:
    model = CountingModel()
    batcher = MicroBatcher(
        model.predict, BatchingConfig(enabled=False, max_delay=0.01), batchable=True
    )
    asyncio.run(_many(batcher, [1, 1, 1, 1]))
    assert model.calls == [1, 1, 1, 1]


def test_full_queue_refuses_with_retry_after() -> None:
    model = CountingModel()
    config = BatchingConfig(max_queue_rows=4, retry_after=2.0, max_delay=0.001)
    batcher = MicroBatcher(model.predict, config, batchable=True)

    async def flood() -> list[object]:
        return await asyncio.gather(
            *(batcher.infer(_request(i, 2)) for i in range(6)), return_exceptions=True
        )

    results = asyncio.run(flood())
    refused = [r for r in results if isinstance(r, ServerOverloaded)]
    served = [r for r in results if isinstance(r, dict)]
    assert refused and served
    assert all(r.retry_after == 2.0 for r in refused)


def test_a_failing_call_fails_only_its_batch() -> None:
    def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (inputs["x"] < 0).any():
            raise RuntimeError("model failed")
        return {"y": inputs["x"]}

    batcher = MicroBatcher(predict, BatchingConfig(enabled=False), batchable=True)

    async def run() -> list[object]:
        bad = batcher.infer({"x": np.array([[-1.0]])})
        good = batcher.infer({"x": np.array([[1.0]])})
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = asyncio.run(run())
    assert isinstance(bad, RuntimeError)
    assert isinstance(good, dict)


def test_close_waits_for_queued_requests() -> None:
    model = CountingModel()
    batcher = MicroBatcher(model.predict, BatchingConfig(max_delay=0.001), batchable=True)

    async def run() -> list[dict[str, np.ndarray]]:
        tasks = [asyncio.ensure_future(batcher.infer(_request(i))) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.close()
        return await asyncio.gather(*tasks)

    assert len(asyncio.run(run())) == 5
    assert sum(model.calls) == 5
