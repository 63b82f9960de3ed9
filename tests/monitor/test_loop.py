"""The monitoring end of the loop on a real workspace: captures written at two edges by the
serving capture encoder, replicated up to the core by `edgeloop replicate`, judged by
`edgeloop drift report`; drift injected at one site gives one report with plots and one
`drift.detected` in the core journal, however often the report runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.journal import JournalSink
from edgeloop.model.events import EventType
from edgeloop.serving.capture import encode_batch
from edgeloop.serving.oip import encode_tensor
from edgeloop.store.journaled import JournaledStore
from edgeloop.testing.driftdata import T0
from edgeloop.workspace import Workspace

runner = CliRunner()


def served_batch(rng: np.random.Generator, site: str, n: int, shift: float) -> bytes:
    rows = np.column_stack([rng.normal(shift, 1.0, n), rng.exponential(1.0, n)])
    records = [
        {
            "time": (T0 + timedelta(seconds=5 * i)).timestamp(),
            "request_id": f"{site}-{i}",
            "model": "churn",
            "version": "1",
            "inputs": [encode_tensor("input", row.reshape(1, -1).astype(np.float32))],
            "outputs": [encode_tensor("label", np.array([int(row[0] > 0)]))],
        }
        for i, row in enumerate(rows)
    ]
    import orjson

    records = orjson.loads(orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY))
    return encode_batch("captures", records, site, "b-0001")


def test_drift_at_one_edge_reaches_the_core_once(workspace_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(31)
    ws = Workspace.load(workspace_dir)
    w = ["--workspace", str(workspace_dir)]
    for site, shift in (("edge-a", 0.0), ("edge-b", 1.0)):
        key = f"captures/churn/{site}/{T0:%Y/%m/%d}/b-0001.parquet"
        # As at an edge: the store journals object.created, which replication follows.
        journal = ws.journal(site)
        edge = JournaledStore(ws.store(site), JournalSink(journal), site)
        edge.put(key, served_batch(rng, site, 700, shift))
        journal.close()

    replicated = runner.invoke(app, ["replicate", "--once", *w])
    assert replicated.exit_code == 0, replicated.output
    assert len(list(ws.store("core").list("captures/churn/"))) == 2

    train = np.column_stack([rng.normal(0, 1, 5000), rng.exponential(1.0, 5000)])
    pq.write_table(pa.table({"a": train[:, 0], "b": train[:, 1]}), tmp_path / "train.parquet")
    profiled = runner.invoke(app, ["drift", "profile", "--model", "churn", "--version", "1",
                                   "--data", str(tmp_path / "train.parquet"),
                                   "--tensor", "input", *w])  # fmt: skip
    assert profiled.exit_code == 0, profiled.output

    end = (T0 + timedelta(hours=1)).isoformat()
    for _ in range(3):  # a scheduler that fires more than once per window
        result = runner.invoke(app, ["drift", "report", "--model", "churn", "--end", end, *w])
        assert result.exit_code == 0, result.output
        assert "edge-a: no_drift" in result.output and "edge-b: drift" in result.output

    journal = ws.journal("core")
    drift_events = journal.read(types=[EventType.DRIFT_DETECTED])
    journal.close()
    assert len(drift_events) == 1
    event = drift_events[0].event
    assert event.site == "edge-b" and "input[0]" in event.data["drifted"]
    with ws.store("core").get(event.data["html"]) as reader:
        page = reader.read().decode()
    assert page.count("<svg") == 2 and "input[0]" in page
