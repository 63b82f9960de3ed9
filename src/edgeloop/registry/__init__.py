"""The model registry: versions, aliases, states, lineage and model cards, with packages
signed in the OpenSSF model signing format and kept in the core store."""

from edgeloop.registry.db import VersionState, make_engine
from edgeloop.registry.lineage import DatasetRef, Lineage, ObjectRef, render_lineage
from edgeloop.registry.registry import (
    CANDIDATE,
    CHAMPION,
    Registry,
    VersionInfo,
    download_package,
    package_prefix,
)
from edgeloop.registry.signing import (
    VerifiedPackage,
    generate_signing_key,
    open_verified,
    sign_package,
    verifier,
    verify_package,
)

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "DatasetRef",
    "Lineage",
    "ObjectRef",
    "Registry",
    "VerifiedPackage",
    "VersionInfo",
    "VersionState",
    "download_package",
    "generate_signing_key",
    "make_engine",
    "open_verified",
    "package_prefix",
    "render_lineage",
    "sign_package",
    "verifier",
    "verify_package",
]
