"""`edgeloop drift profile|report` and `edgeloop quality` on a real workspace, with capture
batches written by edgeloop's own serving capture code (OIP tensors as JSON)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.model.events import EventType
from edgeloop.serving.capture import encode_batch
from edgeloop.serving.oip import encode_tensor
from edgeloop.testing.driftdata import T0
from edgeloop.workspace import Workspace

runner = CliRunner()


def training_data(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    return np.column_stack(
        [rng.normal(shift, 1.0, n), rng.normal(5.0, 2.0, n), rng.uniform(0, 1, n)]
    ).astype(np.float32)


def write_served(ws: Workspace, site: str, x: np.ndarray, batch: str) -> None:
    """Captures (and labels) as the serving capture writer stores them, in the core store."""
    records, labels = [], []
    for i, row in enumerate(x):
        rid = f"{site}-{batch}-{i}"
        time = (T0 + timedelta(seconds=i)).timestamp()
        prediction = np.array([int(row[0] > 0)], dtype=np.int64)
        records.append({
            "time": time, "request_id": rid, "model": "churn", "version": "1",
            "inputs": [encode_tensor("input", row.reshape(1, -1))],
            "outputs": [encode_tensor("label", prediction)],
        })  # fmt: skip
        labels.append({"time": time, "request_id": rid, "model": "churn", "label": "1"})
    store = ws.store("core")
    records = orjson.loads(orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY))
    day = f"{T0:%Y/%m/%d}"
    store.put(f"captures/churn/{site}/{day}/{batch}.parquet",
              encode_batch("captures", records, site, batch))  # fmt: skip
    store.put(f"labels/churn/{site}/{day}/{batch}.parquet",
              encode_batch("labels", labels, site, batch))  # fmt: skip


def test_profile_report_and_quality_from_the_command_line(
    workspace_dir: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(9)
    train = training_data(rng, 4000)
    table = pa.table({"f0": train[:, 0], "f1": train[:, 1], "f2": train[:, 2],
                      "target": (train[:, 0] > 0).astype(np.int64),
                      "predicted": (train[:, 0] > 0).astype(np.int64)})  # fmt: skip
    pq.write_table(table, tmp_path / "train.parquet")
    ws = Workspace.load(workspace_dir)
    w = ["--workspace", str(workspace_dir)]

    result = runner.invoke(app, ["drift", "profile", "--model", "churn", "--version", "1",
                                 "--data", str(tmp_path / "train.parquet"), "--drop", "target",
                                 "--prediction-column", "predicted",
                                 "--tensor", "input", *w])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "monitoring/profiles/churn/1.json" in result.output

    write_served(ws, "edge-a", training_data(rng, 600), "a1")
    write_served(ws, "edge-b", training_data(rng, 600, shift=1.5), "b1")
    end = (T0 + timedelta(hours=1)).isoformat()
    html = tmp_path / "drift.html"
    args = ["drift", "report", "--model", "churn", "--end", end, "--html", str(html), *w]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "edge-a: no_drift" in result.output and "edge-b: drift" in result.output
    assert "emitted" in result.output
    pages = {p.name: p.read_text() for p in tmp_path.glob("drift-*.html")}
    assert set(pages) == {"drift-edge-a.html", "drift-edge-b.html"}
    assert pages["drift-edge-b.html"].count("<svg") == 4  # three features and the prediction

    again = runner.invoke(app, [*args, "--json", "--site", "edge-b"])
    assert again.exit_code == 0, again.output
    report = orjson.loads(again.output.splitlines()[-1])
    assert report["status"] == "drift" and "input[0]" in report["drifted"]
    assert report["emitted"] is False  # the same window was reported already

    journal = ws.journal("core")
    events = journal.read(types=[EventType.DRIFT_DETECTED])
    journal.close()
    assert [e.event.site for e in events] == ["edge-b"]

    quality = runner.invoke(app, ["quality", "--model", "churn", "--since", "30d",
                                  "--end", end, "--json", *w])  # fmt: skip
    assert quality.exit_code == 0, quality.output
    points = orjson.loads(quality.output)["points"]
    assert {p["site"] for p in points} == {"edge-a", "edge-b"}
    # Every label is "1" and the stand-in model says 1 when input[0] > 0.
    edge_b = next(p for p in points if p["site"] == "edge-b")
    assert edge_b["value"] > 0.8 and edge_b["labels"] == 600


def test_clear_errors_without_profile_or_captures(workspace_dir: Path) -> None:
    w = ["--workspace", str(workspace_dir)]
    result = runner.invoke(app, ["drift", "report", "--model", "nobody", *w])
    assert result.exit_code == 1
    assert "no captures of model 'nobody'" in result.output
    ws = Workspace.load(workspace_dir)
    ws.store("core").put("captures/churn/edge-a/2026/11/24/x.parquet", b"junk")
    result = runner.invoke(app, ["drift", "report", "--model", "churn", "--end",
                                 "2026-11-24T11:00:00+00:00", *w])  # fmt: skip
    assert result.exit_code == 1
    assert "x.parquet" in result.output and "Traceback" not in result.output
    bad = runner.invoke(app, ["drift", "report", "--model", "churn", "--window", "soon", *w])
    assert bad.exit_code == 1 and "bad duration" in bad.output


def test_model_and_site_names_cannot_escape_the_store(workspace_dir: Path) -> None:
    w = ["--workspace", str(workspace_dir)]
    for args in (["--model", "../../etc"], ["--model", "churn", "--site", "../edge-a"]):
        result = runner.invoke(app, ["drift", "report", *args, "--end", "2026-11-24T11:00Z", *w])
        assert result.exit_code == 1, result.output
        assert "error" in result.output and "Traceback" not in result.output
    assert not (workspace_dir.parent / "etc").exists()
