"""Pure desired state: what each site should run, derived from deployments and rollouts, and the
reconcile diff an agent acts on."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from edgeloop.model.rollout import RolloutState, Selector


@dataclass(frozen=True, slots=True)
class Deployment:
    """A deployment maps one model's version to every site its selector matches."""

    name: str
    model: str
    version: str
    selector: str = ""


@dataclass(frozen=True, slots=True)
class RolloutView:
    """What desired-state derivation needs of a rollout: its versions, waves and progress."""

    id: str
    deployment: str
    from_version: str
    to_version: str
    state: RolloutState
    waves: tuple[tuple[str, ...], ...]
    current_wave: int
    """Index of the last wave that has been started (0 is the first)."""

    def reached(self, site: str) -> bool:
        """Whether the rollout has told `site` to move to the new version."""
        return any(site in wave for wave in self.waves[: self.current_wave + 1])


@dataclass(frozen=True, slots=True)
class DesiredModel:
    """One model a site should serve; `rollback` allows the agent to install an older version."""

    model: str
    version: str
    deployment: str
    rollout: str | None = None
    rollback: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "deployment": self.deployment,
            "rollout": self.rollout,
            "rollback": self.rollback,
        }


def desired_models(
    site: str,
    labels: Mapping[str, str],
    deployments: Iterable[Deployment],
    rollouts: Mapping[str, RolloutView],
) -> list[DesiredModel]:
    """The models `site` should run; `rollouts` holds the latest rollout of each deployment."""
    out: dict[str, DesiredModel] = {}
    for dep in sorted(deployments, key=lambda d: d.name):
        if not Selector.parse(dep.selector).matches(labels):
            continue
        version, rollout_id, rollback = dep.version, None, False
        rollout = rollouts.get(dep.name)
        if rollout is not None and rollout.reached(site):
            rollout_id = rollout.id
            if rollout.state == RolloutState.ROLLED_BACK:
                version, rollback = rollout.from_version, True
            else:
                if rollout.state != RolloutState.COMPLETED:
                    version = rollout.to_version
                # A rollout to an older version is a deliberate downgrade (an alias moved back,
                # or an operator chose it): the document says so, or agents would refuse it.
                rollback = version == rollout.to_version and _downgrade(rollout)
        # Two deployments of one model on one site: the first by name wins, deterministically.
        out.setdefault(dep.model, DesiredModel(dep.model, version, dep.name, rollout_id, rollback))
    return [out[m] for m in sorted(out)]


def _downgrade(rollout: RolloutView) -> bool:
    return bool(rollout.from_version) and is_older(rollout.to_version, rollout.from_version)


def desired_document(site: str, models: Sequence[DesiredModel]) -> dict[str, Any]:
    """The JSON document an agent receives (and the store holds, signed) for `site`."""
    return {
        "kind": "edgeloop.desired-state/v1",
        "site": site,
        "models": [m.to_dict() for m in models],
    }


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a document: sorted keys, no whitespace; what gets hashed and signed."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def etag_of(document: Mapping[str, Any]) -> str:
    """A strong ETag of a document's content."""
    return '"' + hashlib.sha256(canonical_json(document)).hexdigest()[:32] + '"'


_PART = re.compile(r"(\d+)|(\D+)")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders `2` < `10` and `1.2.9` < `1.10.0`, numbers below words."""
    return tuple((0, int(n)) if n else (1, w) for n, w in _PART.findall(version))


def is_older(candidate: str, installed: str) -> bool:
    """Whether `candidate` is an older version than `installed`."""
    return version_key(candidate) < version_key(installed)


class ActionKind(StrEnum):
    LOAD = "load"
    ROLLBACK = "rollback"
    UNLOAD = "unload"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Action:
    """One step an agent takes to move a site toward its desired state."""

    kind: ActionKind
    model: str
    version: str | None
    reason: str = ""


def reconcile(desired: Sequence[DesiredModel], installed: Mapping[str, str]) -> list[Action]:
    """The actions that turn `installed` (model -> version) into `desired`; empty when equal.

    An older version is refused unless the desired state says it is a rollback, so a replayed
    or stale document can never downgrade a site.
    """
    actions: list[Action] = []
    wanted = {d.model: d for d in desired}
    for model, want in sorted(wanted.items()):
        have = installed.get(model)
        if have == want.version:
            continue
        if have is not None and is_older(want.version, have):
            if want.rollback:
                actions.append(Action(ActionKind.ROLLBACK, model, want.version, f"from {have}"))
            else:
                actions.append(
                    Action(ActionKind.REFUSE, model, want.version, f"older than installed {have}")
                )
            continue
        actions.append(Action(ActionKind.LOAD, model, want.version, f"from {have or 'nothing'}"))
    actions.extend(
        Action(ActionKind.UNLOAD, model, None, "no deployment selects this site")
        for model in sorted(set(installed) - set(wanted))
    )
    return actions
