"""Reference profiles in the core store: a version's profile of every site's training rows at
`monitoring/profiles/<model>/<version>.json`, and its profile of one site's rows at
`monitoring/profiles/<model>/<version>/<site>.json`.

They live beside the model package, not inside it: the package is signed, and adding a file
to it would (rightly) fail verification.
"""

from __future__ import annotations

from edgeloop.errors import MonitoringError, ObjectNotFound, ProfileNotFound
from edgeloop.monitor.profile import ReferenceProfile
from edgeloop.store import ObjectStore

PROFILE_ROOT = "monitoring/profiles"


def profile_key(model: str, version: str, site: str | None = None) -> str:
    """Where the profile of `version` (of one `site`'s rows, or of every site's) is stored."""
    for what, name in (("model", model), ("version", version), ("site", site)):
        if name is not None and (not name or "/" in name):
            raise MonitoringError(f"{what} {name!r} cannot name a profile: it is empty or has '/'")
    if site is None:
        return f"{PROFILE_ROOT}/{model}/{version}.json"
    return f"{PROFILE_ROOT}/{model}/{version}/{site}.json"


def save_profile(store: ObjectStore, profile: ReferenceProfile) -> str:
    """Write `profile` (replacing any profile of the same version and site); returns its key."""
    key = profile_key(profile.model, profile.version, profile.site)
    store.put(key, profile.to_json())
    return key


def profile_versions(store: ObjectStore, model: str) -> list[str]:
    """Versions of `model` with a stored profile of every site's rows, oldest write first."""
    prefix = f"{PROFILE_ROOT}/{model}/"
    infos = [
        i for i in store.list(prefix) if i.key.endswith(".json") and "/" not in i.key[len(prefix) :]
    ]
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


def profiled_sites(store: ObjectStore, model: str, version: str) -> list[str]:
    """Sites with a profile of their own rows for `model` at `version`, sorted."""
    prefix = profile_key(model, version)[: -len(".json")] + "/"
    return sorted(i.key[len(prefix) : -len(".json")] for i in store.list(prefix))


def load_reference(
    store: ObjectStore, model: str, version: str | None, site: str
) -> ReferenceProfile:
    """What a window of `site` is judged against: the profile of that site's own training rows
    of `version` (the latest profiled version when None) if there is one, else the profile of
    every site's rows."""
    if version is None:
        versions = profile_versions(store, model)
        if not versions:
            return load_profile(store, model)  # raises ProfileNotFound, saying what to do
        version = versions[-1]
    try:
        with store.get(profile_key(model, version, site)) as reader:
            return ReferenceProfile.from_json(reader.read())
    except ObjectNotFound:
        return load_profile(store, model, version)
