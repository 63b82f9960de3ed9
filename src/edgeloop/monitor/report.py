"""Drift reports as files: JSON for machines, one self-contained HTML page with inline SVG plots
for people (no scripts, no CDN), both under `monitoring/reports/<model>/<site>/<window-end>/`."""

from __future__ import annotations

import html
import itertools
from datetime import datetime

import orjson

from edgeloop.monitor.drift import DriftReport, FeatureDrift, MultivariateDrift, Plot
from edgeloop.store import ObjectStore

REPORT_ROOT = "monitoring/reports"
_REF = "#3b6ea8"
_CUR = "#e07b39"
_W, _H, _PAD = 420, 150, 28


def report_prefix(model: str, site: str, window_end: datetime) -> str:
    """Where the report of one window lives in the core store."""
    return f"{REPORT_ROOT}/{model}/{site}/{window_end:%Y%m%dT%H%M%SZ}/"


def report_json(report: DriftReport) -> bytes:
    """The report as indented JSON (deterministic for one window, so re-runs write the same)."""
    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def write_report(store: ObjectStore, report: DriftReport) -> dict[str, str]:
    """Write `report.json` and `report.html` of `report`; returns their keys."""
    prefix = report_prefix(report.model, report.site, report.window_end)
    keys = {"json": prefix + "report.json", "html": prefix + "report.html"}
    store.put(keys["json"], report_json(report))
    store.put(keys["html"], render_html(report).encode("utf-8"))
    return keys


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"


def _histogram_svg(plot: Plot) -> str:
    edges = plot.edges or []
    if len(edges) < 2:
        return ""
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0
    widths = [max(b - a, span * 1e-3) for a, b in itertools.pairwise(edges)]
    ref = [s / w for s, w in zip(plot.reference, widths, strict=True)]
    cur = [s / w for s, w in zip(plot.current, widths, strict=True)]
    top = max([*ref, *cur, 1e-12])

    def x(v: float) -> float:
        return _PAD + (v - lo) / span * (_W - 2 * _PAD)

    def y(v: float) -> float:
        return _H - _PAD - v / top * (_H - 2 * _PAD)

    bars = "".join(
        f'<rect x="{x(a):.1f}" y="{y(d):.1f}" width="{max(x(b) - x(a), 0.5):.1f}" '
        f'height="{_H - _PAD - y(d):.1f}" fill="{_CUR}" fill-opacity="0.55"/>'
        for a, b, d in zip(edges, edges[1:], cur, strict=False)
    )
    step = " ".join(
        f"{x(a):.1f},{y(d):.1f} {x(b):.1f},{y(d):.1f}"
        for a, b, d in zip(edges, edges[1:], ref, strict=False)
    )
    axis = (
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#555"/>'
        f'<text x="{_PAD}" y="{_H - 8}" font-size="10">{_fmt(lo)}</text>'
        f'<text x="{_W - _PAD}" y="{_H - 8}" font-size="10" text-anchor="end">{_fmt(hi)}</text>'
    )
    return _svg(bars + f'<polyline points="{step}" fill="none" stroke="{_REF}" '
                f'stroke-width="2"/>' + axis)  # fmt: skip


def _bars_svg(plot: Plot) -> str:
    labels = plot.labels or []
    if not labels:
        return ""
    top = max([*plot.reference, *plot.current, 1e-12])
    slot = (_W - 2 * _PAD) / len(labels)
    parts = []
    for i, (label, r, c) in enumerate(zip(labels, plot.reference, plot.current, strict=True)):
        left = _PAD + i * slot
        for offset, share, colour in ((0.1, r, _REF), (0.5, c, _CUR)):
            height = share / top * (_H - 2 * _PAD)
            parts.append(
                f'<rect x="{left + offset * slot:.1f}" y="{_H - _PAD - height:.1f}" '
                f'width="{slot * 0.4:.1f}" height="{height:.1f}" fill="{colour}"/>'
            )
        parts.append(
            f'<text x="{left + slot / 2:.1f}" y="{_H - 12}" font-size="9" '
            f'text-anchor="middle">{html.escape(label[:12])}</text>'
        )
    return _svg("".join(parts))


def _svg(body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img">{body}</svg>'
    )


def _feature_section(feature: FeatureDrift) -> str:
    plot = ""
    if feature.plot is not None:
        plot = _histogram_svg(feature.plot) if feature.plot.edges else _bars_svg(feature.plot)
    stats = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>"
        for k, v in feature.statistics.items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in [*feature.reasons, *feature.notes])
    return (
        f'<section class="{feature.status}"><h3>{html.escape(feature.name)} '
        f"<small>{feature.kind} &middot; {feature.status}</small></h3>"
        f'<div class="row">{plot}<table>{stats}</table></div><ul>{notes}</ul></section>'
    )


def _multivariate_section(result: MultivariateDrift | None) -> str:
    if result is None:
        return ""
    verdict = "drift" if result.drifted else "ok"
    return (
        f'<section class="{verdict}"><h3>multivariate <small>{result.method} &middot; '
        f"{verdict}</small></h3><p>MMD&sup2; {_fmt(result.statistic)}, p-value "
        f"{_fmt(result.pvalue)} over {len(result.columns)} numeric features "
        f"({result.reference_rows} reference rows, {result.current_rows} window rows)</p></section>"
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
    "section{border-left:4px solid #9c9;padding:.2rem 1rem;margin:1rem 0}"
    "section.drift{border-color:#d33}section.no_data,section.missing_column{border-color:#bbb}"
    ".row{display:flex;gap:2rem;align-items:flex-start}td{padding:0 .6rem;font-size:.85rem}"
    "small{color:#666;font-weight:normal}.legend span{display:inline-block;width:1em;height:1em;"
    "margin:0 .3em 0 1em;vertical-align:middle}"
)


def render_html(report: DriftReport) -> str:
    """One HTML page: a summary, then each feature's plot (reference vs window) and stats."""
    title = f"Drift: {report.model} at {report.site}"
    sections = [_feature_section(f) for f in report.features]
    if report.prediction is not None:
        sections.append(_feature_section(report.prediction))
    drifted = ", ".join(report.drifted) or "nothing"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    reference = (
        "every site's training rows"
        if report.reference_site is None
        else f"{report.reference_site}'s own training rows"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>version {html.escape(report.version)} &middot; window "
        f"{report.window_start.isoformat()} to {report.window_end.isoformat()} &middot; "
        f"{report.rows} rows &middot; status <b>{report.status}</b> &middot; reference: "
        f"{html.escape(reference)}</p>"
        f"<p>drifted: <b>{html.escape(drifted)}</b> (significance {report.significance:g} per "
        f"report, {_fmt(report.test_significance)} per test)</p><ul>{notes}</ul>"
        f'<p class="legend"><span style="background:{_REF}"></span>reference'
        f'<span style="background:{_CUR}"></span>window</p>'
        + _multivariate_section(report.multivariate)
        + "".join(sections)
        + "</body></html>"
    )
