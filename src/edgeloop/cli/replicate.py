"""`edgeloop replicate`: copy objects between stores, verified, resumable, evented."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from edgeloop.cli import common
from edgeloop.cli.common import (
    WorkspaceOption,
    friendly_errors,
    load_workspace,
    print_json,
    use_progress,
)
from edgeloop.errors import ConfigError, ReplicationError
from edgeloop.replication import (
    JsonReporter,
    Ledger,
    LineReporter,
    ProgressReporter,
    ReplicationOptions,
    ReplicationStatus,
    Replicator,
    RichReporter,
    Snapshot,
    default_state_dir,
    find_rule,
    parse_rate,
    read_status,
    replicator_for_rule,
    replicator_for_urls,
)
from edgeloop.replication.rules import LEDGER_NAME, rules_run_at

if TYPE_CHECKING:  # the workspace loads only when one is used (not for --from URL --to URL)
    from edgeloop.workspace import Workspace

app = typer.Typer(
    help="Copy objects between stores: verified by SHA-256, resumable after a crash, each copy "
    "reported as an object.replicated event. Give --from/--to (store URLs, or site names with "
    "a workspace), or run the workspace's replication rules.",
    invoke_without_command=True,
    no_args_is_help=False,
)

FromOption = typer.Option(
    None, "--from", help="Source store URL (file://, s3://, memory://) or site name."
)
ToOption = typer.Option(
    None,
    "--to",
    help="Target store URL or site name. A file:// target fsyncs every object; add ?syncfs=0 "
    "to never flush its whole file system for a batch, ?fsync=0 for scratch data "
    "(docs/storage.md).",
)
PrefixOption = typer.Option("", "--prefix", help="Only keys under this prefix.")
StateOption = typer.Option(
    None,
    "--state",
    help="Directory for the ledger (default: the workspace state dir, or "
    "~/.local/state/edgeloop/replication/<digest>/).",
)
RuleOption = typer.Option(None, "--rule", help="Run only this rule of edgeloop.yaml (its name).")


def _reporter(as_json: bool, label: str = "") -> ProgressReporter:
    if as_json:
        return JsonReporter(label=label)
    if use_progress(as_json):
        return RichReporter()
    return LineReporter(label=label)


def _is_site(workspace: Workspace | None, name: str | None) -> bool:
    if workspace is None or not name or "://" in name:
        return False
    return any(site.name == name for site in workspace.sites())


def _maybe_workspace(path: Path | None, needed: bool) -> Workspace | None:
    if path is None and not needed:
        return None
    return load_workspace(path)


def _build(
    from_: str | None,
    to: str | None,
    prefix: str,
    rule_name: str | None,
    workspace_path: Path | None,
    state: Path | None,
    source_journal: str | None,
    events_journal: str | None,
    options: ReplicationOptions,
    reporter: ProgressReporter,
    as_json: bool,
    site: str | None = None,
) -> list[Replicator]:
    if bool(from_) != bool(to):
        raise typer.BadParameter("give both --from and --to, or neither (to run the rules)")
    workspace = _maybe_workspace(workspace_path, needed=not from_)
    if from_ and to:
        if _is_site(workspace, from_) and _is_site(workspace, to):
            from edgeloop.workspace import ReplicationRule

            assert workspace is not None
            rule = ReplicationRule(
                source=from_,
                target=to,
                prefix=prefix,
                transfers=options.transfers,
                anti_entropy_interval=options.anti_entropy_interval,
            )
            return [replicator_for_rule(workspace, rule, options=options, reporter=reporter)]
        sink = None
        if events_journal:
            from edgeloop.journal import open_journal

            sink = open_journal(events_journal)
        return [
            replicator_for_urls(
                from_,
                to,
                prefix=prefix,
                state_dir=state,
                source_journal=source_journal,
                sink=sink,
                options=options,
                reporter=reporter,
            )
        ]
    assert workspace is not None
    rules = find_rule(workspace, rule_name)
    if site is not None:
        rules = [r for r in rules if r in rules_run_at(workspace, site)]
        if not rules:
            raise ConfigError(f"no replication rule of {workspace.config_path} runs at {site}")
    return [
        replicator_for_rule(
            workspace,
            rule,
            options=options,
            # Several rules share one terminal: label their lines (the bar is shared).
            reporter=reporter if len(rules) == 1 else _reporter(as_json, rule.label),
        )
        for rule in rules
    ]


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@app.callback(invoke_without_command=True)
def replicate(
    ctx: typer.Context,
    from_: str = FromOption,
    to: str = ToOption,
    prefix: str = PrefixOption,
    once: bool = typer.Option(
        False, "--once", help="Copy what is new, drain the backlog, exit (the default)."
    ),
    follow: bool = typer.Option(
        False, "--follow", help="Keep replicating until interrupted (Ctrl-C or SIGTERM)."
    ),
    full: bool = typer.Option(
        False,
        "--full",
        help="With a source journal, also list the source (an anti-entropy pass) in --once mode.",
    ),
    transfers: int = typer.Option(
        4,
        "--transfers",
        min=1,
        max=256,
        help="Parallel copies (between two directories: copy processes, see docs/replication.md).",
    ),
    bwlimit: str = typer.Option(
        None, "--bwlimit", help="Bandwidth limit in bytes/s over all transfers, e.g. 10M."
    ),
    source_journal: str = typer.Option(
        None,
        "--source-journal",
        help="The source's event journal (a path or sqlite:/// URL). Without one, the source is "
        "listed to find what exists.",
    ),
    events_journal: str = typer.Option(
        None,
        "--events-journal",
        help="Journal that receives object.replicated events (default: events.db in --state).",
    ),
    state: Path = StateOption,
    anti_entropy_interval: float = typer.Option(
        300.0, "--anti-entropy-interval", min=0, help="Seconds between listing passes (--follow)."
    ),
    max_backlog: int = typer.Option(
        100_000, "--max-backlog", min=1, help="Most objects waiting in the on-disk backlog."
    ),
    poll_interval: float = typer.Option(
        1.0, "--poll-interval", min=0.01, help="Seconds between source journal reads (--follow)."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Put objects that failed for good back in the backlog."
    ),
    rule: str = RuleOption,
    site: str = typer.Option(
        None,
        "--site",
        help="Run only the rules this site runs: those with an edge end run at that edge, "
        "others at their source (what `edgeloop up` starts per site).",
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON lines on stdout instead of text."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Replicate objects from one store to another (or run the workspace's rules)."""
    if ctx.invoked_subcommand is not None:
        return
    if once and follow:
        raise typer.BadParameter("--once and --follow exclude each other")
    with friendly_errors():
        options = ReplicationOptions(
            transfers=transfers,
            bwlimit=parse_rate(bwlimit),
            anti_entropy_interval=anti_entropy_interval,
            max_backlog=max_backlog,
            poll_interval=poll_interval,
        )
        reporter = _reporter(as_json)
        replicators = _build(
            from_,
            to,
            prefix,
            rule,
            workspace,
            state,
            source_journal,
            events_journal,
            options,
            reporter,
            as_json,
            site,
        )
        snapshots = _run(replicators, follow=follow, full=full, retry_failed=retry_failed)
    failed = sum(s.failed for s in snapshots)
    if failed:
        common.err_console.print(
            f"[bold red]error:[/] {failed} objects failed for good; see "
            "`edgeloop replicate status`, fix the cause, then run again with --retry-failed",
            highlight=False,
        )
        raise typer.Exit(1)


def _run(
    replicators: list[Replicator], *, follow: bool, full: bool, retry_failed: bool
) -> list[Snapshot]:
    if retry_failed:
        for replicator in replicators:
            replicator.ledger.retry_failed()
    try:
        if not follow:
            return [r.run_once(full=full or None) for r in replicators]
        stop = threading.Event()
        _stop_on_signals(stop)
        results: list[Snapshot] = []
        errors: list[BaseException] = []

        def run(replicator: Replicator) -> None:
            try:
                results.append(replicator.follow(stop))
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in replicators]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)
        if errors:
            raise errors[0]
        return results
    finally:
        for replicator in replicators:
            replicator.close()


def _status_ledgers(
    from_: str | None,
    to: str | None,
    prefix: str,
    rule_name: str | None,
    workspace_path: Path | None,
    state: Path | None,
) -> list[tuple[str, Path]]:
    if state is not None:
        return [(str(state), state / LEDGER_NAME)]
    if from_ and to and "://" in from_ + to:
        return [(f"{from_} -> {to}", default_state_dir(from_, to, prefix) / LEDGER_NAME)]
    workspace = load_workspace(workspace_path)
    if from_ and to:
        from edgeloop.workspace import ReplicationRule

        rules = [ReplicationRule(source=from_, target=to, prefix=prefix)]
    else:
        rules = find_rule(workspace, rule_name)
    return [
        (r.label, workspace.state_dir(r.source) / "replication" / f"{r.label}.db") for r in rules
    ]


@app.command()
def status(
    from_: str = FromOption,
    to: str = ToOption,
    prefix: str = PrefixOption,
    state: Path = StateOption,
    rule: str = RuleOption,
    as_json: bool = typer.Option(False, "--json", help="One JSON document per pair."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Show the backlog, failures and positions of replication pairs (reads the ledger only)."""
    with friendly_errors():
        for label, path in _status_ledgers(from_, to, prefix, rule, workspace, state):
            if not path.exists():
                raise ReplicationError(
                    f"no ledger at {path}: this pair has not run yet; start it with "
                    "`edgeloop replicate`"
                )
            ledger = Ledger(path)
            try:
                _show_status(label, read_status(ledger), as_json)
            finally:
                ledger.close()


def _show_status(label: str, st: ReplicationStatus, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "pair": label,
                "backlog": st.backlog,
                "done": st.counts.done,
                "failed": st.counts.failed,
                "gone": st.counts.gone,
                "journal_cursor": st.journal_cursor,
                "watermark": st.watermark,
                "last_full_pass": st.last_full_pass,
                "failures": [{"key": k, "attempts": a, "error": e} for k, a, e in st.failures],
            }
        )
        return
    c = st.counts
    common.console.print(f"[bold]{label}[/]", highlight=False)
    common.console.print(
        f"  backlog {c.pending}  done {c.done}  failed {c.failed}  gone {c.gone}  "
        f"journal cursor {st.journal_cursor}",
        highlight=False,
    )
    if st.watermark is not None:
        common.console.print(
            f"  listing pass under way, after key {st.watermark!r}", highlight=False
        )
    for key, attempts, error in st.failures:
        common.console.print(f"  [red]{key}[/] attempts {attempts}: {error}", highlight=False)


if __name__ == "__main__":
    app()
