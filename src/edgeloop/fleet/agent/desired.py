"""Accepting a signed desired-state document: signature first, then kind, site and generation.

The same checks apply whether the envelope came over the API, from the site's own store
(replicated from the core's `fleet/desired/<site>.json`), or from the agent's state file.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeloop.errors import ObjectNotFound, SignatureInvalid, StoreError
from edgeloop.fleet.signing import desired_key, verify_envelope
from edgeloop.model.desired import DesiredModel
from edgeloop.store.base import ObjectStore

DOCUMENT_KIND = "edgeloop.desired-state/v1"
MAX_ENVELOPE_BYTES = 1024 * 1024


class StaleDesired(SignatureInvalid):
    """A correctly signed document older than the one already applied (a replay)."""


@dataclass(frozen=True)
class Desired:
    """A verified desired state: the raw envelope (kept on disk) and what it says."""

    raw: bytes
    generation: int
    models: tuple[DesiredModel, ...]


def accept(raw: bytes, public_key: str, site: str, min_generation: int = 0) -> Desired:
    """The desired state in `raw` if it verifies under `public_key`, is for `site` and is not
    older than `min_generation`; SignatureInvalid (or StaleDesired) otherwise."""
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise SignatureInvalid(f"desired-state envelope of {len(raw)} bytes is too large")
    document = verify_envelope(raw, public_key)
    if document.get("kind") != DOCUMENT_KIND:
        raise SignatureInvalid(f"signed document is not a {DOCUMENT_KIND} document")
    if document.get("site") != site:
        raise SignatureInvalid(
            f"signed desired state is for site {document.get('site')!r}, not {site!r}"
        )
    generation = document.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
        raise SignatureInvalid("signed desired state has no valid generation")
    if generation < min_generation:
        raise StaleDesired(
            f"desired state generation {generation} is older than the applied {min_generation}"
        )
    try:
        models = tuple(
            DesiredModel(
                model=str(m["model"]),
                version=str(m["version"]),
                deployment=str(m["deployment"]),
                rollout=None if m.get("rollout") is None else str(m["rollout"]),
                rollback=m.get("rollback") is True,
            )
            for m in document.get("models") or []
        )
    except (KeyError, TypeError) as exc:
        raise SignatureInvalid(f"signed desired state is malformed: {exc}") from None
    return Desired(raw, generation, models)


def read_local_copy(store: ObjectStore, site: str) -> bytes | None:
    """The envelope replicated into the site's own store, or None when there is none."""
    try:
        with store.get(desired_key(site)) as reader:
            data = b""
            for chunk in reader:
                data += chunk
                if len(data) > MAX_ENVELOPE_BYTES:
                    raise SignatureInvalid("the stored desired-state envelope is too large")
            return data
    except ObjectNotFound:
        return None
    except StoreError:
        return None
