"""Build replicators: from two store URLs (the library call and `--from/--to`), or from the
replication rules of a workspace's edgeloop.yaml."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgeloop.errors import ConfigError
from edgeloop.journal import SQLiteJournal, open_journal
from edgeloop.journal.base import EventSink, Journal
from edgeloop.replication.ledger import Ledger
from edgeloop.replication.plan import public_url
from edgeloop.replication.progress import ProgressReporter
from edgeloop.replication.rate import parse_rate
from edgeloop.replication.replicator import ReplicationOptions, Replicator
from edgeloop.store import open_store, validate_prefix

if TYPE_CHECKING:  # the workspace (pydantic, YAML) loads only where rules are used
    from edgeloop.workspace import Workspace
    from edgeloop.workspace.config import ReplicationRule

LEDGER_NAME = "ledger.db"
EVENTS_NAME = "events.db"


def pair_label(source_url: str, target_url: str, prefix: str) -> str:
    """What identifies a replication pair (no credentials in it)."""
    return f"{public_url(source_url)} -> {public_url(target_url)} [{prefix}]"


def default_state_dir(source_url: str, target_url: str, prefix: str) -> Path:
    """~/.local/state/edgeloop/replication/<digest of from, to, prefix>/ (XDG_STATE_HOME aware)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(pair_label(source_url, target_url, prefix).encode()).hexdigest()
    return base / "edgeloop" / "replication" / digest[:16]


def replicator_for_urls(
    source_url: str,
    target_url: str,
    *,
    prefix: str = "",
    state_dir: Path | None = None,
    source_journal: str | Journal | None = None,
    sink: EventSink | Journal | None = None,
    options: ReplicationOptions | None = None,
    reporter: ProgressReporter | None = None,
    source_site: str = "",
    target_site: str = "",
) -> Replicator:
    """A replicator between two store URLs; its ledger lives in `state_dir`, and its events go
    to `sink` (default: a journal `events.db` in the state directory)."""
    validate_prefix(prefix)
    state = state_dir or default_state_dir(source_url, target_url, prefix)
    state.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(state / LEDGER_NAME, pair=pair_label(source_url, target_url, prefix))
    journal = open_journal(source_journal) if isinstance(source_journal, str) else source_journal
    options = replace(options or ReplicationOptions(), prefix=prefix)
    return Replicator(
        open_store(source_url),
        open_store(target_url),
        ledger,
        sink if sink is not None else SQLiteJournal(state / EVENTS_NAME),
        source_journal=journal,
        source_site=source_site or public_url(source_url),
        target_site=target_site or public_url(target_url),
        options=options,
        reporter=reporter,
    )


def rule_options(
    rule: ReplicationRule, base: ReplicationOptions | None = None
) -> ReplicationOptions:
    """The options a workspace rule sets, over `base`."""
    return replace(
        base or ReplicationOptions(),
        prefix=rule.prefix,
        transfers=rule.transfers,
        bwlimit=parse_rate(rule.bwlimit),
        anti_entropy_interval=rule.anti_entropy_interval,
    )


def rules_run_at(workspace: Workspace, site: str) -> list[ReplicationRule]:
    """The rules a process at `site` runs: a rule runs at its edge end (edges open only
    outbound connections, so they push captures up and pull packages down), else at its
    source."""
    from edgeloop.workspace.config import Tier

    workspace.site(site)
    edges = {s.name for s in workspace.sites(Tier.EDGE)}

    def runner(rule: ReplicationRule) -> str:
        if rule.source in edges:
            return rule.source
        return rule.target if rule.target in edges else rule.source

    return [rule for rule in workspace.rules() if runner(rule) == site]


def find_rule(workspace: Workspace, name: str | None) -> list[ReplicationRule]:
    """The rule called `name` (its `name`, or `<from>-to-<to>`), or every rule when None."""
    rules = workspace.rules()
    if name is None:
        if not rules:
            raise ConfigError(
                f"{workspace.config_path} has no replication rules; add one under "
                "`replication:` (from, to, prefix) or give --from and --to"
            )
        return rules
    chosen = [r for r in rules if r.label == name]
    if not chosen:
        raise ConfigError(
            f"no replication rule {name!r} in {workspace.config_path}; rules: "
            + (", ".join(r.label for r in rules) or "none")
        )
    return chosen


def replicator_for_rule(
    workspace: Workspace,
    rule: ReplicationRule,
    *,
    options: ReplicationOptions | None = None,
    reporter: ProgressReporter | None = None,
) -> Replicator:
    """The replicator of one workspace rule: driven by the source site's journal, events to
    the target site's journal, ledger in the source site's state directory."""
    source = workspace.site(rule.source)
    target = workspace.site(rule.target)
    state = workspace.state_dir(rule.source) / "replication"
    ledger = Ledger(
        state / f"{rule.label}.db", pair=pair_label(source.store, target.store, rule.prefix)
    )
    return Replicator(
        workspace.store(rule.source),
        workspace.store(rule.target),
        ledger,
        workspace.journal(rule.target),
        source_journal=workspace.journal(rule.source),
        source_site=rule.source,
        target_site=rule.target,
        options=rule_options(rule, options),
        reporter=reporter,
    )
