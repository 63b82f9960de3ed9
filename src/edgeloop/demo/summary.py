"""How the demo looks in a terminal: timeline lines with their time since the start, and the
closing summary (versions per site, quality before and after the drift, loop timings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edgeloop.demo.timeline import Step

if TYPE_CHECKING:
    from edgeloop.demo.run import DemoResult
    from edgeloop.demo.workspace import DemoSettings

STAGE_STYLE = {
    "setup": "dim",
    "capture": "cyan",
    "replicate": "blue",
    "trigger": "magenta",
    "retrain": "magenta",
    "register": "green",
    "rollout": "yellow",
    "swap": "bold yellow",
    "watch": "red",
}


class Clock:
    """Formats timeline lines as `+SSS.s  stage  site  text`, relative to the demo start."""

    def __init__(self, started: float) -> None:
        self.started = started

    def line(self, stage: str, site: str, text: str, *, at: float | None = None) -> Text:
        import time

        elapsed = (at if at is not None else time.time()) - self.started
        out = Text(f"+{elapsed:6.1f}s ", style="dim")
        out.append(f"{stage:<9} ", style=STAGE_STYLE.get(stage, ""))
        out.append(f"{site:<7} ", style="bold")
        out.append(text)
        return out

    def step(self, step: Step) -> Text:
        return self.line(step.stage, step.site, step.text, at=step.time)


def banner(settings: DemoSettings) -> Panel:
    mode = "fast mode" if settings.fast else f"up to {settings.duration:g}s"
    return Panel(
        "A core and two edge sites on this machine, each part its own process. Watch the loop "
        "run by itself: capture at the edges, replicate to the core, trigger, retrain, gate, "
        "register and sign, roll out in waves, hot swap.",
        title=f"edgeloop demo ({mode})",
    )


def _pct(value: float | None, count: int) -> str:
    return "-" if value is None else f"{value:.1%} ({count})"


def summary(result: DemoResult, settings: DemoSettings, drift_site: str) -> RenderableType:
    parts: list[RenderableType] = []
    sites = Table(title="Versions per site")
    for col in ("site", "serving now", "versions seen (first answer)", "requests", "failed"):
        sites.add_column(col)
    for site, traffic in result.traffic.items():
        stats = traffic.stats
        seen = ", ".join(stats.versions()) or "-"
        sites.add_row(
            site, str(result.serving.get(site)), seen, str(stats.sent), str(len(stats.failures))
        )
    parts.append(sites)

    quality = Table(title="Live quality (accuracy of answers against the late labels)")
    for col in ("site", "before the drift", "after, old versions", "after, retrained versions"):
        quality.add_column(col)
    new = result.new_version
    for site, traffic in result.traffic.items():
        stats = traffic.stats
        before = stats.accuracy("before")
        old = [v for v in stats.versions() if new is None or int(v) < int(new)]
        retrained = [v for v in stats.versions() if new is not None and int(v) >= int(new)]
        after_old = _merge([stats.accuracy("after", v) for v in old])
        after_new = _merge([stats.accuracy("after", v) for v in retrained])
        marker = " (drifted)" if site == drift_site else ""
        quality.add_row(site + marker, _pct(*before), _pct(*after_old), _pct(*after_new))
    parts.append(quality)

    if result.timings:
        loops = Table(title="Loop timings (seconds)")
        loops.add_column("version")
        loops.add_column("trigger")
        stage_names = list(result.timings[0].stages)
        for name in stage_names:
            loops.add_column(name)
        loops.add_column("total")
        for timing in result.timings:
            loops.add_row(
                timing.version,
                timing.trigger,
                *(f"{timing.stages[n]:.1f}" for n in stage_names),
                f"{timing.total:.1f}",
            )
        parts.append(loops)

    checks = Table(title="Checks")
    checks.add_column("check")
    checks.add_column("result")
    for c in result.captures:
        verdict = "[green]ok[/]" if c.ok else "[red]FAILED[/]"
        checks.add_row(
            f"captures of {c.site} at the core",
            f"{verdict}: {c.answered} answered, {c.at_core} at the core, "
            f"{c.missing} missing, {c.duplicates} duplicated",
        )
    failed = sum(result.failures.values())
    checks.add_row(
        "inference requests failed (swaps included)",
        ("[green]0[/]" if failed == 0 else f"[red]{failed}[/]"),
    )
    checks.add_row(
        "new version after the drift",
        f"[green]{new}[/], trained on captures of {', '.join(result.lineage_sites)}"
        if new
        else "[red]none registered[/] (try a longer --duration)",
    )
    restarts = {k: v for k, v in result.restarts.items() if v}
    checks.add_row("process restarts", ", ".join(f"{k} {v}" for k, v in restarts.items()) or "0")
    parts.append(checks)
    verdict = (
        "[bold green]The loop closed by itself.[/]"
        if result.ok
        else "[bold red]The loop did not close; see the checks above and the logs.[/]"
    )
    parts.append(Text.from_markup(verdict + f"  Workspace: {result.workspace}"))
    return Group(*parts)


def _merge(scores: list[tuple[float | None, int]]) -> tuple[float | None, int]:
    total = sum(n for _, n in scores)
    if not total:
        return None, 0
    return sum((a or 0.0) * n for a, n in scores) / total, total
