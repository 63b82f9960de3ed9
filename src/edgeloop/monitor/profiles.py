"""Reference profiles in the core store, at `monitoring/profiles/<model>/<version>.json`.

They live beside the model package, not inside it: the package is signed, and adding a file
to it would (rightly) fail verification.
"""

from __future__ import annotations

from edgeloop.errors import ObjectNotFound, ProfileNotFound
from edgeloop.monitor.profile import ReferenceProfile
from edgeloop.store import ObjectStore

PROFILE_ROOT = "monitoring/profiles"


def profile_key(model: str, version: str) -> str:
    return f"{PROFILE_ROOT}/{model}/{version}.json"


def save_profile(store: ObjectStore, profile: ReferenceProfile) -> str:
    """Write `profile` (replacing any profile of the same version); returns its key."""
    key = profile_key(profile.model, profile.version)
    store.put(key, profile.to_json())
    return key


def profile_versions(store: ObjectStore, model: str) -> list[str]:
    """Versions of `model` with a stored profile, oldest write first."""
    prefix = f"{PROFILE_ROOT}/{model}/"
    infos = [i for i in store.list(prefix) if i.key.endswith(".json")]
    infos.sort(key=lambda i: (i.modified, i.key))
    return [i.key[len(prefix) : -len(".json")] for i in infos]


def profiled_models(store: ObjectStore) -> list[str]:
    """Models with at least one stored profile, sorted."""
    prefix = f"{PROFILE_ROOT}/"
    models = {i.key[len(prefix) :].split("/", 1)[0] for i in store.list(prefix)}
    return sorted(m for m in models if m)


def load_profile(store: ObjectStore, model: str, version: str | None = None) -> ReferenceProfile:
    """The profile of `model` at `version`, or the most recently written one when None."""
    if version is None:
        versions = profile_versions(store, model)
        if not versions:
            raise ProfileNotFound(
                f"no reference profile for model {model!r} in {store.url}; build one from its "
                "training data with `edgeloop drift profile --model ... --version ... --data ...`"
            )
        version = versions[-1]
    key = profile_key(model, version)
    try:
        with store.get(key) as reader:
            return ReferenceProfile.from_json(reader.read())
    except ObjectNotFound:
        raise ProfileNotFound(
            f"no reference profile for {model} version {version} ({key}); build one with "
            "`edgeloop drift profile`, or pass --version of a profiled version"
        ) from None
