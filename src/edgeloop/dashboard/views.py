"""What the dashboard pages show, as JSON-ready values built from registry versions, drift
reports and journal entries; pure, so each view is tested without a server."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from edgeloop.journal.base import JournalEntry

#: Statistics of a drift report's features that the charts plot, in the order shown.
DRIFT_STATISTICS = ("psi", "ks", "js", "wasserstein_std")
#: Event data larger than this (as JSON) is cut to its keys on the timeline.
MAX_EVENT_DATA = 4096


def model_summary(
    name: str, versions: Sequence[Mapping[str, Any]], aliases: Mapping[str, int]
) -> dict[str, Any]:
    """One row of the models page: how many versions, which are champion and latest."""
    registered = [v for v in versions if v["state"] == "registered"]
    latest = max((v["version"] for v in registered), default=None)
    return {
        "name": name,
        "versions": len(versions),
        "registered": len(registered),
        "latest": latest,
        "aliases": dict(aliases),
        "champion": aliases.get("champion"),
        "updated": max((v.get("registered") or v["created"] for v in versions), default=None),
    }


def lineage_graph(name: str, versions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The model's lineage as a graph: capture sites feed datasets and runs, which made
    versions; each version points back at the one it refines (its parent).

    Nodes are `{id, kind, label, detail}` with kind `site`, `dataset`, `run` or `version`;
    edges are `{source, target}`, pointing the way the data flowed.
    """
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []

    def node(node_id: str, kind: str, label: str, detail: dict[str, Any]) -> str:
        nodes.setdefault(node_id, {"id": node_id, "kind": kind, "label": label, "detail": detail})
        return node_id

    def edge(source: str, target: str) -> None:
        if {"source": source, "target": target} not in edges:
            edges.append({"source": source, "target": target})

    known = {v["version"] for v in versions}
    for v in sorted(versions, key=lambda v: v["version"]):
        lineage = v.get("lineage") or {}
        target = node(
            f"version:{v['version']}",
            "version",
            f"{name}:{v['version']}",
            {"state": v["state"], "aliases": list(v.get("aliases") or ())},
        )
        upstream = target
        run_id = lineage.get("run_id")
        if run_id:
            upstream = node(f"run:{run_id}", "run", run_id, {"pipeline": lineage.get("pipeline")})
            edge(upstream, target)
        dataset = lineage.get("dataset") or {}
        if dataset.get("snapshot"):
            data_node = node(
                f"dataset:{dataset['snapshot']}",
                "dataset",
                dataset["snapshot"],
                {"rows": dataset.get("rows"), "key": dataset.get("key")},
            )
            edge(data_node, upstream)
            upstream = data_node
        for site, facts in _sources_by_site(lineage).items():
            site_node = node(f"site:{site}", "site", site, {})
            nodes[site_node]["detail"][f"{name}:{v['version']}"] = facts
            edge(site_node, upstream)
        parent = lineage.get("parent")
        if parent is not None and parent in known:
            edge(f"version:{parent}", target)
    return {"nodes": list(nodes.values()), "edges": edges}


def _sources_by_site(lineage: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Per site: how many capture and label objects (and capture records) a version used."""
    out: dict[str, Counter[str]] = {}
    for kind in ("captures", "labels"):
        for ref in lineage.get(kind) or ():
            site = ref.get("site") or _site_from_key(ref.get("key", ""))
            counts = out.setdefault(site, Counter())
            counts[kind] += 1
            if kind == "captures" and ref.get("records"):
                counts["records"] += int(ref["records"])
    return {site: dict(c) for site, c in sorted(out.items())}


def _site_from_key(key: str) -> str:
    """The site of `captures/<model>/<site>/...` and `labels/<model>/<site>/...` keys."""
    parts = key.split("/")
    return parts[2] if len(parts) > 3 and parts[0] in ("captures", "labels") else "unknown"


def drift_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """One point of a site's drift chart: the window, its verdict and each feature's
    distances (from a report.json the drift job wrote)."""
    features = [*report.get("features", ())]
    if report.get("prediction"):
        features.append(report["prediction"])
    multivariate = report.get("multivariate") or None
    return {
        "model": report.get("model"),
        "site": report.get("site"),
        "version": report.get("version"),
        "window_start": report.get("window_start"),
        "window_end": report.get("window_end"),
        "rows": report.get("rows"),
        "status": report.get("status"),
        "drifted": list(report.get("drifted") or ()),
        "features": [
            {
                "name": f.get("name"),
                "kind": f.get("kind"),
                "status": f.get("status"),
                "pvalue": f.get("pvalue"),
                **{k: (f.get("statistics") or {}).get(k) for k in DRIFT_STATISTICS},
            }
            for f in features
        ],
        "multivariate": None
        if multivariate is None
        else {
            "pvalue": multivariate.get("pvalue"),
            "drifted": multivariate.get("drifted"),
        },
    }


def drift_plots(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The reference-against-window histograms of a report, one per feature that has one."""
    features = [*report.get("features", ())]
    if report.get("prediction"):
        features.append(report["prediction"])
    return [
        {"name": f.get("name"), "kind": f.get("kind"), "status": f.get("status"), **f["plot"]}
        for f in features
        if f.get("plot")
    ]


def timeline_entry(entry: JournalEntry) -> dict[str, Any]:
    """A journal entry as the timeline shows it; oversized event data is cut to its keys."""
    event = entry.event
    data: Any = event.data
    if len(orjson.dumps(data, default=str)) > MAX_EVENT_DATA:
        data = {"truncated": True, "keys": sorted(event.data)[:50]}
    return {
        "seq": entry.seq,
        "id": event.id,
        "type": event.type,
        "site": event.site,
        "subject": event.subject,
        "time": event.time.isoformat(),
        "data": data,
    }


def type_matches(event_type: str, wanted: Iterable[str]) -> bool:
    """Whether `event_type` is one of `wanted`: exact names, or `prefix.*` for a family."""
    for pattern in wanted:
        if pattern.endswith(".*"):
            if event_type.startswith(pattern[:-1]):
                return True
        elif event_type == pattern:
            return True
    return False


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities (no JSON form) turned into None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
