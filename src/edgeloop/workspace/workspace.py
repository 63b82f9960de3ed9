"""A workspace on disk: its config plus where each site keeps its store, journal and state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeloop.errors import ConfigError
from edgeloop.journal import Journal, open_journal
from edgeloop.store import ObjectStore, open_store
from edgeloop.workspace.config import ReplicationRule, SiteConfig, Tier, WorkspaceConfig
from edgeloop.workspace.loader import CONFIG_NAME, dump_config, load_config

STATE_DIR = "state"


@dataclass(frozen=True)
class Workspace:
    """A loaded workspace rooted at `root`; relative store paths resolve inside it."""

    root: Path
    config: WorkspaceConfig

    @classmethod
    def load(cls, root: Path) -> Workspace:
        """Load the workspace in `root` (a directory with edgeloop.yaml, or the file itself)."""
        root = root.absolute()
        directory = root.parent if root.is_file() else root
        return cls(directory, load_config(root))

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    def site(self, name: str) -> SiteConfig:
        try:
            return self.config.site(name)
        except KeyError as exc:
            raise ConfigError(f"{self.config_path}: {exc.args[0]}") from None

    def sites(self, tier: Tier | None = None) -> list[SiteConfig]:
        return [s for s in self.config.sites if tier is None or s.tier == tier]

    def state_dir(self, site: str) -> Path:
        """Where `site` keeps its journal, ledgers and spools inside the workspace."""
        self.site(site)
        path = self.root / STATE_DIR / site
        path.mkdir(parents=True, exist_ok=True)
        return path

    def store(self, site: str) -> ObjectStore:
        return open_store(self.site(site).store, base_dir=self.root)

    def journal_url(self, site: str) -> str:
        """The site's journal: its `journal` URL, or SQLite at state/<site>/journal.db."""
        configured = self.site(site).journal
        if configured is None:
            return str(self.state_dir(site) / "journal.db")
        if "://" in configured or Path(configured).is_absolute():
            return configured
        return str(self.root / configured)

    def journal_path(self, site: str) -> Path:
        """The site's SQLite journal file; an error when the site journals to PostgreSQL."""
        url = self.journal_url(site).removeprefix("sqlite:///")
        if "://" in url:
            raise ConfigError(f"{self.config_path}: site {site!r} has no SQLite journal ({url})")
        path = Path(url)
        return path if path.is_absolute() else self.root / path

    def journal(self, site: str) -> Journal:
        return open_journal(self.journal_url(site), base_dir=self.root)

    def rules(self) -> list[ReplicationRule]:
        return list(self.config.replication)

    def save(self) -> None:
        """Write the config back to edgeloop.yaml atomically."""
        tmp = self.config_path.with_suffix(".yaml.tmp")
        tmp.write_text(dump_config(self.config), encoding="utf-8")
        tmp.replace(self.config_path)
