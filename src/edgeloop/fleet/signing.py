"""Signed desired-state envelopes (ECDSA P-256 over SHA-256) and the store they are published in.

An envelope carries the canonical document bytes (base64), so a verifier checks exactly the
bytes that were signed and parses them only after the signature holds.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgeloop.errors import ConfigError, SignatureInvalid
from edgeloop.model.desired import canonical_json
from edgeloop.store.base import ObjectStore

ENVELOPE_KIND = "edgeloop.signed/v1"


def generate_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Create a P-256 private key at `path` (PEM, mode 0600) and return it."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    return key


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 key at `path`, created on first use."""
    if not path.exists():
        return generate_key(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"{path} is not an EC P-256 private key; the fleet signs with P-256")
    return key


def public_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """A short, stable id of a key: SHA-256 of its public key PEM."""
    return hashlib.sha256(public_pem(key).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """Signs documents with the control plane's private key."""

    key: ec.EllipticCurvePrivateKey

    @functools.cached_property
    def key_id(self) -> str:
        return key_id(self.key)

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()

    def verifies(self, document: dict[str, Any], signature: str) -> bool:
        """Whether `signature` over `document` was made by this key."""
        try:
            self.key.public_key().verify(
                base64.b64decode(signature), canonical_json(document), ec.ECDSA(hashes.SHA256())
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    def envelope(self, document: dict[str, Any], signature: str | None = None) -> dict[str, Any]:
        """The signed envelope of `document`; `signature` reuses one made earlier over the
        same canonical bytes (signing is deterministic in content, not in bytes)."""
        payload = canonical_json(document)
        return {
            "kind": ENVELOPE_KIND,
            "key_id": self.key_id,
            "payload": base64.b64encode(payload).decode(),
            "signature": signature or self.sign(payload),
        }


def verify_envelope(raw: bytes, public_key_pem: str) -> dict[str, Any]:
    """The document inside a signed envelope, or SignatureInvalid; nothing is trusted before."""
    try:
        public = serialization.load_pem_public_key(public_key_pem.encode())
        envelope = orjson.loads(raw)
        if not isinstance(envelope, dict) or envelope.get("kind") != ENVELOPE_KIND:
            raise SignatureInvalid("not a signed edgeloop envelope")
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signature"], validate=True)
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise SignatureInvalid("the trusted key is not an EC key")
        public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except SignatureInvalid:
        raise
    except (InvalidSignature, KeyError, TypeError, ValueError) as exc:
        raise SignatureInvalid(
            f"desired-state envelope does not verify ({type(exc).__name__}); keep the last "
            "verified state and fetch it again"
        ) from None
    document = orjson.loads(payload)
    if not isinstance(document, dict):
        raise SignatureInvalid("signed payload is not a JSON object")
    return document


def desired_key(site: str) -> str:
    """Where a site's signed desired state lives in the core store."""
    return f"fleet/desired/{site}.json"


class DesiredPublisher:
    """Writes each site's signed desired-state envelope into an object store (one atomic put)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def publish(self, site: str, envelope: dict[str, Any]) -> None:
        self.store.put(desired_key(site), canonical_json(envelope))
