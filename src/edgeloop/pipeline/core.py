"""The core-side wiring of pipelines: one workspace's run store, journal, store and triggers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeloop.errors import ConfigError
from edgeloop.journal.base import Journal, JournalSink
from edgeloop.pipeline.cache import StoreCache
from edgeloop.pipeline.executors import Executor, get_executor
from edgeloop.pipeline.runner import run_pipeline
from edgeloop.pipeline.runs import RunRecord, RunStore
from edgeloop.pipeline.triggers import TriggerWorker, pipeline_table, resolve
from edgeloop.workspace import Workspace
from edgeloop.workspace.config import Tier


def core_site(ws: Workspace, name: str | None = None) -> str:
    """The site the core runs as: `name`, else the workspace's first core-tier site."""
    if name:
        ws.site(name)
        return name
    cores = ws.sites(Tier.CORE)
    if not cores:
        raise ConfigError(f"{ws.config_path}: no site has tier: core; add one or pass --site")
    return cores[0].name


@dataclass
class CorePipelines:
    """Everything a core needs to run pipelines for one workspace."""

    ws: Workspace
    site: str
    runs: RunStore
    journal: Journal
    store: Any
    default_executor: str | None = None
    _executors: dict[str, Executor] = field(default_factory=dict)

    @classmethod
    def open(
        cls, ws: Workspace, site: str | None = None, executor: str | None = None
    ) -> CorePipelines:
        site = core_site(ws, site)
        runs = RunStore(ws.state_dir(site) / "pipelines.db")
        return cls(ws, site, runs, ws.journal(site), ws.store(site), executor)

    def run(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        executor: str | None = None,
    ) -> RunRecord:
        """Run the pipeline `name` now (or start the pending run `run_id`), to its end."""
        configs = self.ws.config.pipelines
        pipeline = resolve(name, configs)
        spec = (
            executor
            or self.default_executor
            or (configs[name].executor if name in configs else "inline")
        )
        inputs: dict[str, Any] = {}
        if name in configs:
            inputs.update(configs[name].params)
        if run_id is not None:
            inputs.update(self.runs.get_run(run_id).params)
        inputs.update(params or {})
        if "workspace" in pipeline.inputs:  # steps that use the registry find it here
            inputs["workspace"] = str(self.ws.root)
        inputs = {k: v for k, v in inputs.items() if k in pipeline.inputs}
        if spec not in self._executors:  # kept for the core's life: a Ray cluster starts once
            self._executors[spec] = get_executor(spec)
        return run_pipeline(
            pipeline,
            runs=self.runs,
            executor=self._executors[spec],
            inputs=inputs,
            run_id=run_id,
            store=self.store,
            cache=StoreCache(self.store),
            events=JournalSink(self.journal),
            site=self.site,
        )

    def worker(self) -> TriggerWorker:
        """A trigger worker over this core's journal, starting runs through `run`."""
        rules = list(self.ws.config.triggers)
        lookup = pipeline_table(rules, self.ws.config.pipelines)

        def start(run_id: str) -> None:
            self.run(self.runs.get_run(run_id).pipeline, run_id=run_id)

        def repair_registry() -> None:
            from edgeloop.registry.workspace import recover_registry

            recover_registry(self.ws)  # pending versions of a dead run, lost events

        return TriggerWorker(
            rules, self.journal, self.runs, start, lookup, repairs=[repair_registry]
        )

    def close(self) -> None:
        for ex in self._executors.values():
            ex.close()
        self._executors.clear()
        self.runs.close()
        self.journal.close()
