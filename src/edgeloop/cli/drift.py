"""`edgeloop drift` (reference profiles, drift reports) and `edgeloop quality` (live quality)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from edgeloop.cli.common import (
    WorkspaceOption,
    console,
    friendly_errors,
    load_workspace,
    print_json,
)
from edgeloop.errors import ConfigError, MonitoringError
from edgeloop.journal import JournalSink
from edgeloop.store import ObjectStore
from edgeloop.workspace import Workspace
from edgeloop.workspace.config import Tier

if TYPE_CHECKING:
    from edgeloop.monitor.drift import DriftReport
    from edgeloop.monitor.quality import QualityReport

# numpy, scipy and pyarrow load inside the commands: other commands should not wait for them.

app = typer.Typer(
    help="Reference profiles and drift reports over captured data.", no_args_is_help=True
)

ModelOption = typer.Option(..., "--model", "-m", help="Model name.")
CoreOption = typer.Option(
    None, "--core", help="The core site whose store holds captures (default: the core tier site)."
)


def _core(workspace: Workspace, name: str | None) -> str:
    if name:
        return workspace.site(name).name
    cores = workspace.sites(Tier.CORE) or workspace.sites(Tier.CLOUD)
    if not cores:
        raise ConfigError(f"{workspace.config_path}: no core site; pass --core NAME")
    return cores[0].name


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise MonitoringError(
            f"--end {text!r} is not an ISO-8601 time (e.g. 2026-11-24T10:00Z)"
        ) from None


def _summary(report: DriftReport) -> Table:
    table = Table(
        title=f"{report.model}@{report.version} at {report.site}: {report.status} "
        f"({report.rows} rows, {report.window_start:%Y-%m-%d %H:%M} to "
        f"{report.window_end:%Y-%m-%d %H:%M} UTC)"
    )
    for column in ("feature", "kind", "status", "p-value", "psi", "ks / js", "wasserstein/std"):
        table.add_column(column)
    rows = [*report.features, *([report.prediction] if report.prediction else [])]
    for f in rows:
        s = f.statistics
        second = s.get("ks", s.get("js"))
        table.add_row(
            f.name,
            f.kind,
            f"[red]{f.status}[/]" if f.drifted else f.status,
            _num(f.pvalue),
            _num(s.get("psi")),
            _num(second),
            _num(s.get("wasserstein_std")),
        )
    if report.multivariate is not None:
        m = report.multivariate
        status = "[red]drift[/]" if m.drifted else "ok"
        table.add_row("(multivariate)", m.method, status, _num(m.pvalue), "", "", "")
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _open_core(workspace: Path | None, core: str | None) -> tuple[Workspace, str, ObjectStore]:
    ws = load_workspace(workspace)
    name = _core(ws, core)
    return ws, name, ws.store(name)


@app.command("report")
def report_cmd(
    model: str = ModelOption,
    site: list[str] = typer.Option(
        None, "--site", "-s", help="Edge site to judge (repeatable; default: every site)."
    ),
    window: str = typer.Option(
        None, "--window", help="Window length, e.g. 1h or 7d (default: from edgeloop.yaml)."
    ),
    end: str = typer.Option(
        None, "--end", help="Window end, ISO-8601 (default: the last complete aligned window)."
    ),
    version: str = typer.Option(
        None, "--version", help="Profile version to compare with (default: most-served)."
    ),
    html: Path = typer.Option(
        None,
        "--html",
        help="Also write the HTML report here (one site: this file; several: NAME-<site>.html).",
    ),
    write: bool = typer.Option(
        True, "--write/--no-write", help="Save report.json/.html into the core store."
    ),
    emit: bool = typer.Option(
        True, "--emit/--no-emit", help="Journal drift.detected at the core when drift is found."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print each report as one JSON line."),
    core: str = CoreOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Judge the latest window of captures against the version's reference profile."""
    from edgeloop.monitor.job import DriftJob
    from edgeloop.monitor.report import render_html

    with friendly_errors():
        ws, core_site, store = _open_core(workspace, core)
        journal = ws.journal(core_site) if emit else None
        try:
            job = DriftJob(store, ws.config.monitoring, JournalSink(journal) if journal else None)
            outcomes = job.run(
                model,
                sites=site or None,
                window=window,
                end=_parse_time(end),
                version=version,
                write=write,
                emit=emit,
            )
        finally:
            if journal is not None:
                journal.close()
        if not outcomes:
            raise MonitoringError(f"no captures of model {model!r} in {store.url}")
        for outcome in outcomes:
            report = outcome.report
            if html is not None:
                target = html if len(outcomes) == 1 else html.with_name(
                    f"{html.stem}-{report.site}{html.suffix or '.html'}"
                )  # fmt: skip
                target.write_text(render_html(report), encoding="utf-8")
            if as_json:
                print_json({**report.to_dict(), "keys": outcome.keys, "emitted": outcome.emitted})
                continue
            console.print(_summary(report))
            own = report.reference_site
            reference = "every site's training rows" if own is None else f"{own}'s training rows"
            console.print(f"  reference: version {report.version}, {reference}", highlight=False)
            for note in report.notes:
                console.print(f"  note: {note}", highlight=False)
            if outcome.keys:
                console.print(f"  report: {outcome.keys['json']} (+ report.html)", highlight=False)
            if outcome.event is not None:
                state = "emitted" if outcome.emitted else "already journaled"
                console.print(f"  event {outcome.event.id}: {state}", highlight=False)


@app.command("profile")
def profile_cmd(
    model: str = ModelOption,
    version: str = typer.Option(..., "--version", help="Model version the profile describes."),
    data: Path = typer.Option(
        ..., "--data", exists=True, dir_okay=False, help="Training data as a Parquet file."
    ),
    prediction_column: str = typer.Option(
        None, "--prediction-column", help="Column holding the model's predictions, if any."
    ),
    drop: list[str] = typer.Option(
        None, "--drop", help="Column that is not a feature, e.g. the label (repeatable)."
    ),
    tensor: str = typer.Option(
        None,
        "--tensor",
        help="Name the features as the served model's input tensor sees them: NAME[0], "
        "NAME[1], ... in column order (matches captures of one [1, n] input tensor).",
    ),
    site: str = typer.Option(
        None,
        "--site",
        help="The data is this site's only: its windows are judged against this profile "
        "(other sites' against the version's profile without --site).",
    ),
    core: str = CoreOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Build a version's reference profile from its training data and store it at the core."""
    import pyarrow.parquet as pq

    from edgeloop.monitor.profile import build_profile
    from edgeloop.monitor.profiles import save_profile

    with friendly_errors():
        _, _, store = _open_core(workspace, core)
        table = pq.read_table(data)
        predictions = None
        if prediction_column:
            if prediction_column not in table.column_names:
                raise MonitoringError(f"{data}: no column {prediction_column!r}")
            predictions = table.column(prediction_column)
        skip = {*(drop or []), *([prediction_column] if prediction_column else [])}
        features = table.select([c for c in table.column_names if c not in skip])
        if tensor:
            features = features.rename_columns(
                [f"{tensor}[{i}]" for i in range(features.num_columns)]
            )
        profile = build_profile(model, version, features, predictions, site=site)
        key = save_profile(store, profile)
        console.print(
            f"profile of {model}@{version}{f' at {site}' if site else ''}: {profile.rows} rows, "
            f"{len(profile.features)} features -> {key}",
            highlight=False,
        )


def _quality_table(report: QualityReport) -> Table:
    bound = "none" if report.bound is None else f"{report.bound:g}"
    table = Table(title=f"{report.model}: live {report.metric} (bound {bound})")
    for column in ("site", "version", "bucket (UTC)", "labels", report.metric):
        table.add_column(column)
    for p in report.points:
        value = f"[red]{p.value:.4g}[/]" if p.breached else f"{p.value:.4g}"
        table.add_row(p.site, p.version, f"{p.bucket_start:%Y-%m-%d %H:%M}", str(p.labels), value)
    return table


def quality(
    model: str = ModelOption,
    site: list[str] = typer.Option(
        None, "--site", "-s", help="Edge site (repeatable; default: every site)."
    ),
    since: str = typer.Option("24h", "--since", help="How far back to score, e.g. 24h or 7d."),
    end: str = typer.Option(None, "--end", help="End of the span, ISO-8601 (default: now)."),
    emit: bool = typer.Option(
        True, "--emit/--no-emit", help="Journal quality.degraded at the core on a breach."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    core: str = CoreOption,
    workspace: Path = WorkspaceOption,
) -> None:
    """Score live quality (accuracy, F1 or MAE) per site, version and time bucket from labels."""
    from edgeloop.monitor.quality import QualityJob

    with friendly_errors():
        ws, core_site, store = _open_core(workspace, core)
        journal = ws.journal(core_site) if emit else None
        try:
            job = QualityJob(store, ws.config.monitoring, JournalSink(journal) if journal else None)
            report = job.run(
                model, sites=site or None, since=since, end=_parse_time(end), emit=emit
            )
        finally:
            if journal is not None:
                journal.close()
        if as_json:
            print_json(report.to_dict())
            return
        console.print(_quality_table(report))
        if not report.points:
            console.print("  no bucket had enough labels to score", highlight=False)
        for event in report.events:
            console.print(f"  event {event.id}", highlight=False)
