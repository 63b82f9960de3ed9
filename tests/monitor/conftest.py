"""Fixtures of the monitoring tests (the data helpers live in edgeloop.testing.driftdata)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from edgeloop.store import ObjectStore
from edgeloop.testing.driftdata import T0, capture_table, put_parquet


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261124)


@pytest.fixture
def write_captures(rng: np.random.Generator) -> Callable[..., pa.Table]:
    """Write one capture batch of `site` into `store` at T0's day; returns the table."""

    def write(store: ObjectStore, site: str, n: int, **kwargs: Any) -> pa.Table:
        table = capture_table(rng, site, n, **kwargs)
        start: datetime = kwargs.get("start", T0)
        batch = kwargs.get("batch", "b0")
        put_parquet(store, f"captures/churn/{site}/{start:%Y/%m/%d}/{batch}.parquet", table)
        return table

    return write
