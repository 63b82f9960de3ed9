"""The retraining steps: prepare, validate, train, evaluate, gate, register.

Each is an ordinary `@step`; reuse them in your own pipeline or replace one by writing a step
of the same name and output type (see docs/pipelines.md). Settings arrive in the `config`
run input (defaults in DEFAULTS); `window` is the trigger window, `workspace` the core's
workspace directory (filled in by `edgeloop core` and `edgeloop pipeline run`).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edgeloop.errors import ModelNotFound, PipelineError
from edgeloop.pipeline.dsl import Artifact, Step, StepContext, step
from edgeloop.pipeline.graph import Pipeline
from edgeloop.pipeline.retrain import data
from edgeloop.pipeline.retrain.fitting import (
    WARM_START,
    check_fit_mode,
    dump_estimator,
    fit_estimator,
    load_estimator,
    make_estimator,
)

if TYPE_CHECKING:
    from edgeloop.model.manifest import ModelManifest
    from edgeloop.monitor.columns import Kind
    from edgeloop.workspace.config import MonitoringConfig

DEFAULTS: dict[str, Any] = {
    "model": None,  # required: the registered model's name
    "n_features": None,  # required: feature count of a row
    "labels": None,  # allowed label values; None: any
    "max_site_share": 0.5,  # no site may be more than this share of the training data
    "max_label_share": 0.98,  # refuse to train when one label is more of the data (None: off)
    "holdout_fraction": 0.2,  # frozen holdout: chosen by request id, never trained on
    "min_improvement": 0.0,  # candidate accuracy must beat the champion's by this much
    "max_site_regression": 0.05,  # and may lose at most this much on any one site
    # On the recent labelled rows (this run's new data in the holdout), the candidate may
    # lose at most this much accuracy to the champion; None: not checked.
    "max_recent_regression": None,
    "min_rows": 10,
    "estimator": "logistic_regression",  # or sgd_classifier; other kinds: replace `train`
    "fit": "refit",  # or warm_start: begin from the champion's fitted estimator
    "C": 1.0,  # logistic_regression: inverse regularization strength
    "alpha": 0.0001,  # sgd_classifier: regularization strength
    "max_iter": 500,
    "drift_lookback": "7d",  # a drift-triggered run reads captures and labels this far back
    "pending_max_age": "7d",  # how long a capture waits for its label (and a label for its capture)
    "promote": False,  # a version that passes the gate also becomes `champion` (moves the fleet)
}


def settings(config: dict[str, Any]) -> dict[str, Any]:
    merged = {**DEFAULTS, **config}
    for required in ("model", "n_features"):
        if merged[required] is None:
            raise PipelineError(
                f"retraining needs config.{required}; set it in the pipeline's "
                "params in edgeloop.yaml"
            )
    return merged


def _read(ctx: StepContext, key: str) -> bytes:
    out: bytes = ctx.store.get(key).read()
    return out


def _recent_batches(
    ctx: StepContext, root: str, model: str, since: datetime
) -> list[dict[str, Any]]:
    """Every batch of `model` under `root` (all sites) on the days from `since` to today."""
    from edgeloop.monitor.captures import discover_sites
    from edgeloop.monitor.window import days_between

    found = []
    for site in discover_sites(ctx.store, model, root):
        for day in days_between(since, datetime.now(UTC) + timedelta(days=1)):
            for info in ctx.store.list(f"{root}/{model}/{site}/{day:%Y/%m/%d}/"):
                if info.key.endswith(".parquet"):
                    found.append({"key": info.key, "sha256": info.sha256, "site": site})
    return found


def window_batches(
    window: dict[str, Any], cfg: dict[str, Any], ctx: StepContext
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The capture and label batches a run trains on: the replicated objects of its window,
    and for each `drift.detected` of this model in it, every batch of the last
    `drift_lookback` before the drifted window ended (labels arrive late: up to today)."""
    from edgeloop.monitor.window import parse_duration

    members = window.get("members", [])
    captures = [m for m in members if str(m.get("key", "")).startswith("captures/")]
    labels = [m for m in members if str(m.get("key", "")).startswith("labels/")]
    drifts = [m for m in members if m.get("model") == cfg["model"] and m.get("window_end")]
    if drifts:
        end = min(datetime.fromisoformat(str(m["window_end"])) for m in drifts)
        since = end - parse_duration(str(cfg["drift_lookback"]))
        captures += _recent_batches(ctx, "captures", cfg["model"], since)
        labels += _recent_batches(ctx, "labels", cfg["model"], since)
    return _by_key(captures), _by_key(labels)


def _by_key(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per key (a batch both replicated in the window and found by listing)."""
    return list({m["key"]: m for m in found}.values())


@step(cache=False, retries=2)  # reads the store (retried: it may be briefly unreachable)
def prepare(window: dict[str, Any], config: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Join new capture and label batches by request id with the previous snapshot: captures
    still waiting for their label (and labels for their capture) stay in the snapshot as
    pending rows, up to `pending_max_age` (a drift window brings the model's recent batches,
    see `window_batches`)."""
    from edgeloop.monitor.window import parse_duration

    cfg = settings(config)
    captures, labels = window_batches(window, cfg, ctx)
    pointer = f"datasets/{cfg['model']}/latest"
    previous = None
    try:
        previous_key = _read(ctx, pointer).decode()
        previous = data.from_parquet(_read(ctx, previous_key))
    except KeyError:  # ObjectNotFound is a KeyError: the first snapshot
        previous_key = None
    merged = data.merge(
        previous,
        [data.from_parquet(_read(ctx, m["key"])) for m in captures],
        [data.from_parquet(_read(ctx, m["key"])) for m in labels],
        now=datetime.now(UTC),
        max_age=parse_duration(str(cfg["pending_max_age"])),
    )
    key = f"datasets/{cfg['model']}/{ctx.run_id}.parquet"
    info = ctx.store.put(key, data.to_parquet(merged.snapshot))
    ctx.store.put(pointer, key.encode())
    pending = merged.pending
    return {
        "snapshot": Artifact(key, info.sha256, info.size),
        "rows": merged.snapshot.num_rows - sum(pending.values()),
        "new_rows": len(merged.new_ids),
        "new_ids": merged.new_ids,
        "pending": pending,
        "expired": merged.expired,
        "previous": previous_key,
        "captures": [
            {"key": m["key"], "sha256": m.get("sha256"), "site": m.get("site")} for m in captures
        ],
        "labels": [
            {"key": m["key"], "sha256": m.get("sha256"), "site": m.get("site")} for m in labels
        ],
    }


@step
def validate(prepare: dict[str, Any], config: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Quarantine bad rows (schema, NaN/Inf, unknown labels), cap any one site's share, and
    refuse a label distribution a classifier cannot learn from (one label, or one dominating)."""
    cfg = settings(config)
    table = data.training_rows(data.from_parquet(ctx.read_artifact(prepare["snapshot"])))
    clean, reasons = data.quarantine(table, int(cfg["n_features"]), cfg["labels"])
    capped, dropped = data.cap_site_share(clean, float(cfg["max_site_share"]))
    if capped.num_rows < int(cfg["min_rows"]):
        raise PipelineError(
            f"only {capped.num_rows} usable rows after validation "
            f"(quarantined: {reasons}); need {cfg['min_rows']}"
        )
    labels = data.label_counts(capped)
    problem = data.label_problem(labels, cfg["max_label_share"])
    if problem is not None:
        raise PipelineError(f"label distribution {labels}: {problem}; nothing is trained")
    return {
        "dataset": ctx.put_artifact("clean.parquet", data.to_parquet(capped)),
        "rows": capped.num_rows,
        "labels": labels,
        "quarantined": reasons,
        "capped": dropped,
    }


def _arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    x = np.asarray(table["features"].to_pylist(), dtype=np.float32)
    return (
        x,
        np.asarray(table["label"].to_pylist()),
        table["site"].to_pylist(),
        table["request_id"].to_pylist(),
    )


@step(cache=False)  # reads the registry: which version is champion now
def start_from(config: dict[str, Any], workspace: str, ctx: StepContext) -> dict[str, Any]:
    """For `fit: warm_start`, the champion's fitted estimator (recorded in its lineage, with
    its SHA-256); nothing for a refit, when there is no champion yet, or when its estimator
    is no longer in the store."""
    from edgeloop.registry.workspace import open_registry
    from edgeloop.workspace import Workspace

    cfg = settings(config)
    if check_fit_mode(str(cfg["fit"])) != WARM_START:
        return {"version": None, "estimator": None}
    registry = open_registry(Workspace.load(Path(workspace)))
    try:
        champion = registry.get(cfg["model"], "champion")
    except ModelNotFound:
        return {"version": None, "estimator": None}
    finally:
        registry.close()
    ref = (champion.lineage.model_extra or {}).get("estimator")
    if not isinstance(ref, dict) or not ref.get("key") or not ref.get("sha256"):
        return {"version": champion.version, "estimator": None}
    try:
        ctx.store.head(str(ref["key"]))
    except KeyError:  # ObjectNotFound: run artifacts were cleaned up; train refits
        return {"version": champion.version, "estimator": None}
    return {
        "version": champion.version,
        "estimator": Artifact(str(ref["key"]), str(ref["sha256"]), int(ref.get("size", 0))),
    }


@step
def train(
    validate: dict[str, Any], start_from: dict[str, Any], config: dict[str, Any], ctx: StepContext
) -> dict[str, Any]:
    """Fit the estimator on everything outside the frozen holdout, from scratch or warm-started
    from the champion's (`config.fit`); package it as ONNX and keep it as skops bytes."""
    from edgeloop.serving.packaging import package_estimator

    cfg = settings(config)
    x, y, _sites, rids = _arrays(data.from_parquet(ctx.read_artifact(validate["dataset"])))
    train_mask = _train_mask(rids, cfg)
    previous = None
    if start_from["estimator"] is not None:
        previous = load_estimator(ctx.read_artifact(start_from["estimator"]))
    fitted = fit_estimator(
        make_estimator(cfg), previous, x[train_mask], y[train_mask], str(cfg["fit"])
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "package"
        package_estimator(
            fitted.estimator,
            out,
            name=cfg["model"],
            version=1,
            metrics={"train_rows": float(train_mask.sum())},
        )
        files = {
            p.relative_to(out).as_posix(): ctx.put_artifact(
                "package/" + p.relative_to(out).as_posix(), p.read_bytes()
            )
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }
    return {
        "package": files,
        "estimator": ctx.put_artifact("estimator.skops", dump_estimator(fitted.estimator)),
        "fit": {
            "how": fitted.how,
            "from_version": start_from["version"] if fitted.how != "refit" else None,
            "note": fitted.note,
        },
        "train_rows": int(train_mask.sum()),
    }


def _artifact_ref(artifact: Any) -> dict[str, Any] | None:
    """An artifact as a plain lineage entry (key, sha256, size), or None."""
    if not isinstance(artifact, Artifact):
        return None
    return {"key": artifact.key, "sha256": artifact.sha256, "size": artifact.size}


def _train_mask(rids: list[str], cfg: dict[str, Any]) -> np.ndarray:
    """Rows outside the frozen holdout (chosen by request id, so it never moves)."""
    return np.array([data.stable_fraction(r) >= cfg["holdout_fraction"] for r in rids], bool)


def _onnx_predict(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(["label"], {name: x})[0])


def _scores(pred: np.ndarray, y: np.ndarray, sites: list[str]) -> dict[str, Any]:
    per_site: dict[str, list[bool]] = defaultdict(list)
    for ok, site in zip((pred.astype(str) == y.astype(str)).tolist(), sites, strict=True):
        per_site[site].append(ok)
    ok_all = [v for vs in per_site.values() for v in vs]
    return {
        "accuracy": float(np.mean(ok_all)) if ok_all else 0.0,
        "rows": len(ok_all),
        "per_site": {s: float(np.mean(v)) for s, v in sorted(per_site.items())},
    }


@step(cache=False, retries=2)  # reads the registry and store (retried: transient faults)
def evaluate(
    train: dict[str, Any],
    validate: dict[str, Any],
    prepare: dict[str, Any],
    config: dict[str, Any],
    workspace: str,
    ctx: StepContext,
) -> dict[str, Any]:
    """Score candidate and champion on the frozen holdout and on the recent (new) holdout rows,
    overall and per site."""
    from edgeloop.registry.workspace import open_registry
    from edgeloop.workspace import Workspace

    cfg = settings(config)
    x, y, sites, rids = _arrays(data.from_parquet(ctx.read_artifact(validate["dataset"])))
    hold = np.array([data.stable_fraction(r) < cfg["holdout_fraction"] for r in rids])
    recent_ids = set(prepare["new_ids"])
    recent = hold & np.array([r in recent_ids for r in rids])
    model_file = next(k for k in train["package"] if k.endswith(".onnx"))
    candidate = ctx.read_artifact(train["package"][model_file])
    result: dict[str, Any] = {"candidate": {}, "champion": None, "champion_version": None}
    hold_sites = [s for s, h in zip(sites, hold, strict=True) if h]
    recent_sites = [s for s, h in zip(sites, recent, strict=True) if h]
    pred = _onnx_predict(candidate, x[hold]) if hold.any() else np.array([])
    result["candidate"] = {
        "holdout": _scores(pred, y[hold], hold_sites),
        "recent": _scores(
            _onnx_predict(candidate, x[recent]) if recent.any() else np.array([]),
            y[recent],
            recent_sites,
        ),
    }
    registry = open_registry(Workspace.load(Path(workspace)))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fetched = registry.fetch(cfg["model"], "champion", Path(tmp) / "champion")
            champion = (fetched.root / fetched.manifest.model_file).read_bytes()
            result["champion_version"] = fetched.manifest.version
    except ModelNotFound:
        return result
    finally:
        registry.close()
    result["champion"] = {
        "holdout": _scores(
            _onnx_predict(champion, x[hold]) if hold.any() else np.array([]), y[hold], hold_sites
        ),
        "recent": _scores(
            _onnx_predict(champion, x[recent]) if recent.any() else np.array([]),
            y[recent],
            recent_sites,
        ),
    }
    return result


@step
def gate(evaluate: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Pass the candidate only if it beats the champion by `min_improvement` on the holdout,
    loses no more than `max_site_regression` on any site, and (when `max_recent_regression`
    is set and there are `min_rows` recent rows) no more than that on the recent rows."""
    cfg = settings(config)
    cand = evaluate["candidate"]["holdout"]
    cand_recent = evaluate["candidate"].get("recent", {"accuracy": 0.0, "rows": 0})
    champ = evaluate["champion"]
    champ_recent = None
    reasons: list[str] = []
    if champ is not None:
        champ_recent = champ.get("recent")
        champ = champ["holdout"]
        need = champ["accuracy"] + float(cfg["min_improvement"])
        if cand["accuracy"] < need:
            reasons.append(
                f"holdout accuracy {cand['accuracy']:.4f} < champion "
                f"{champ['accuracy']:.4f} + {cfg['min_improvement']}"
            )
        for site, acc in champ["per_site"].items():
            mine = cand["per_site"].get(site, 0.0)
            if acc - mine > float(cfg["max_site_regression"]):
                reasons.append(
                    f"site {site}: accuracy {mine:.4f} regresses more than "
                    f"{cfg['max_site_regression']} from {acc:.4f}"
                )
        bound = cfg["max_recent_regression"]
        judged = bound is not None and champ_recent and cand_recent["rows"] >= int(cfg["min_rows"])
        if judged and champ_recent["accuracy"] - cand_recent["accuracy"] > float(bound):
            reasons.append(
                f"recent data ({cand_recent['rows']} rows): accuracy "
                f"{cand_recent['accuracy']:.4f} regresses more than {bound} from "
                f"{champ_recent['accuracy']:.4f}"
            )
    return {
        "passed": not reasons,
        "reasons": reasons,
        "candidate": cand["accuracy"],
        "champion": None if champ is None else champ["accuracy"],
        "candidate_recent": cand_recent["accuracy"] if cand_recent["rows"] else None,
        "champion_recent": (
            champ_recent["accuracy"] if champ_recent and champ_recent["rows"] else None
        ),
    }


# Reads and writes the registry; a retry is safe: the run id is the registration's source key.
@step(cache=False, retries=2)
def register(
    gate: dict[str, Any],
    train: dict[str, Any],
    prepare: dict[str, Any],
    validate: dict[str, Any],
    config: dict[str, Any],
    workspace: str,
    ctx: StepContext,
) -> dict[str, Any]:
    """Package, sign and register the candidate with its lineage (emits `model.registered`),
    or record the gate's refusal and register nothing."""
    if not gate["passed"]:
        return {
            "registered": False,
            "refused": gate["reasons"],
            "gate": gate,
            "quarantined": validate["quarantined"],
            "capped": validate["capped"],
            "pending": prepare.get("pending", {}),
            "expired": prepare.get("expired", {}),
        }
    from edgeloop import __version__
    from edgeloop.registry.lineage import DatasetRef, Lineage, ObjectRef
    from edgeloop.registry.workspace import open_registry
    from edgeloop.workspace import Workspace

    cfg = settings(config)
    snap = prepare["snapshot"]
    lineage = Lineage(
        captures=[
            ObjectRef(key=c["key"], sha256=c["sha256"], site=c.get("site"))
            for c in prepare["captures"]
        ],
        labels=[
            ObjectRef(key=c["key"], sha256=c["sha256"], site=c.get("site"))
            for c in prepare["labels"]
        ],
        dataset=DatasetRef(
            snapshot=ctx.run_id, key=snap.key, sha256=snap.sha256, rows=prepare["rows"]
        ),
        pipeline="retrain-tabular",
        run_id=ctx.run_id,
        code_version=f"edgeloop {__version__}",
        parameters={k: v for k, v in cfg.items() if k != "labels"},
        # what a later warm start begins from, and how this version was fitted
        estimator=_artifact_ref(train.get("estimator")),
        fit=train.get("fit"),
    )
    ws = Workspace.load(Path(workspace))
    registry = open_registry(ws)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "package"
            for rel, art in train["package"].items():
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(ctx.read_artifact(art))
            info = registry.register(
                root,
                lineage=lineage,
                source_key=ctx.run_id,
                aliases=["candidate", "champion"] if cfg["promote"] else ["candidate"],
            )
    finally:
        registry.close()
    return {
        "registered": True,
        "model": info.name,
        "version": info.version,
        **save_reference_profiles(ctx, train, validate, cfg, info.version, ws.config.monitoring),
        "quarantined": validate["quarantined"],
        "capped": validate["capped"],
        "pending": prepare.get("pending", {}),
        "expired": prepare.get("expired", {}),
        "gate": gate,
    }


def save_reference_profiles(
    ctx: StepContext,
    train: dict[str, Any],
    validate: dict[str, Any],
    cfg: dict[str, Any],
    version: int,
    monitoring: MonitoringConfig,
) -> dict[str, Any]:
    """Profile the rows `version` was trained on and its outputs on them, named as the drift
    job sees served inputs, as the version's drift reference at the core: one profile of every
    site's rows, and one per site of that site's newest rows that look alike (see
    `edgeloop.monitor.site_reference`), for sites with at least `monitoring.min_rows` rows."""
    from edgeloop.model.manifest import MANIFEST_NAME, ModelManifest
    from edgeloop.monitor.job import settings_for
    from edgeloop.monitor.profile import build_profile, tensor_columns
    from edgeloop.monitor.profiles import save_profile
    from edgeloop.monitor.site_reference import alike_tail

    manifest = ModelManifest.model_validate_json(ctx.read_artifact(train["package"][MANIFEST_NAME]))
    table = data.from_parquet(ctx.read_artifact(validate["dataset"]))
    trained = table.filter(pa.array(_train_mask(table["request_id"].to_pylist(), cfg)))
    trained = trained.take(_oldest_first(trained))
    x, _y, sites, _rids = _arrays(trained)
    outputs, kind = _first_output(
        ctx.read_artifact(train["package"][manifest.model_file]), manifest, x
    )
    tensor = manifest.inputs[0].name

    def profile(rows: np.ndarray, site: str | None) -> str:
        return save_profile(
            ctx.store,
            build_profile(
                str(cfg["model"]),
                str(version),
                tensor_columns(tensor, x[rows]),
                outputs[rows],
                kinds={"prediction": kind},
                site=site,
            ),
        )

    keys: dict[str, Any] = {"profile": profile(np.arange(len(x)), None), "site_profiles": {}}
    settings = settings_for(monitoring, str(cfg["model"]))
    for site in sorted({s for s in sites if s is not None}):
        rows = np.flatnonzero(np.asarray(sites, dtype=object) == site)  # oldest first
        if len(rows) < settings.min_rows:
            continue  # too few to describe the site: its windows are judged on every site's
        keep = alike_tail(
            tensor_columns(tensor, x[rows]), block=settings.min_rows, settings=settings
        )
        keys["site_profiles"][site] = profile(rows[len(rows) - keep :], site)
    return keys


def _oldest_first(table: pa.Table) -> np.ndarray:
    """Row order by capture time (rows without one first, in snapshot order)."""
    if "time" not in table.column_names:
        return np.arange(table.num_rows)
    micros = pc.fill_null(pc.cast(table["time"], pa.int64()), np.iinfo(np.int64).min)
    return np.argsort(np.asarray(micros), kind="stable")


def _first_output(
    model_bytes: bytes, manifest: ModelManifest, x: np.ndarray
) -> tuple[np.ndarray, Kind]:
    """The model's first output on `x`, one value per row, as the drift job reads served
    outputs (the first value of the first tensor), and its kind: real numbers (a regressor's
    predictions) are numeric; labels (integers, text, booleans) are categorical."""
    import onnxruntime as ort

    from edgeloop.model.manifest import Datatype

    spec = manifest.outputs[0]
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    values = np.asarray(session.run([spec.name], {name: x})[0])
    values = values.reshape(len(x), -1)[:, 0] if len(x) else values.reshape(0)
    if spec.datatype in (Datatype.FP16, Datatype.FP32, Datatype.FP64):
        return values.astype(np.float64), "numeric"
    return values.astype(str), "categorical"


STEPS: list[Step] = [prepare, validate, start_from, train, evaluate, gate, register]


def build_retrain(replace: list[Step] | None = None) -> Pipeline:
    """The retraining pipeline, with any of its steps swapped for yours (matched by name)."""
    by_name = {s.name: s for s in STEPS}
    for s in replace or []:
        by_name[s.name] = s
    return Pipeline.build(
        "retrain-tabular",
        list(by_name.values()),
        inputs={"window": dict, "config": dict, "workspace": str},
        description="Retrain a tabular scikit-learn model on new captures and labels.",
    )


RETRAIN = build_retrain()
