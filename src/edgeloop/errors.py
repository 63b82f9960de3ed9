"""The exceptions edgeloop raises; every one says what went wrong and what to do next.

EdgeloopError
├── ConfigError                 a workspace or settings file is invalid
├── InvalidKeyError             an object key or store URL is unsafe or malformed
├── StoreError                  an object store operation failed
│   ├── ObjectNotFound          the key does not exist
│   ├── ChecksumMismatch        bytes did not hash to the expected SHA-256
│   └── StoreUnavailable        the store cannot be reached (retryable)
├── JournalError                the event journal failed
├── ReplicationError            replication could not proceed
├── FleetError                  a control-plane request could not be done
│   ├── FleetNotFound           the site, deployment, rollout or token does not exist
│   ├── FleetConflict           the request conflicts with the current state (409)
│   └── SignatureInvalid        a desired-state document failed verification
├── RegistryError               the model registry could not do what was asked
│   ├── ModelNotFound           the model, version or alias does not exist
│   └── VersionImmutable        a registered version cannot be changed
├── PipelineError               a pipeline could not be built, compiled or run
│   ├── PipelineDefinitionError  the graph is invalid (cycle, missing input, type mismatch)
│   └── StepFailed              a step raised on every attempt
├── MonitoringError             drift or quality monitoring could not proceed
│   ├── EmptySampleError        a statistic was asked about a sample with no values
│   └── ProfileNotFound         no reference profile exists for the model version
└── ServingError                the inference server could not do what was asked
    ├── PackageError            a model package is malformed, unsafe or cannot load
    │   ├── UntrustedModel      a package holds code-executing or non-allowlisted types
    │   ├── PackageVerificationFailed  signature, signer, file set or a hash does not verify
    │   └── DowngradeRefused    the package is older than the version installed
    ├── InferenceRequestError   an inference request is invalid (carries an HTTP status)
    └── ServerOverloaded        the server is above capacity; retry after a pause
"""

from __future__ import annotations


class EdgeloopError(Exception):
    """Base class of every error edgeloop raises on purpose."""


class ConfigError(EdgeloopError):
    """A workspace file or setting is invalid; the message names the file and field."""


class InvalidKeyError(EdgeloopError, ValueError):
    """An object key or URL was refused because it is unsafe or malformed."""


class StoreError(EdgeloopError):
    """An object store operation failed."""


class ObjectNotFound(StoreError, KeyError):
    """The requested key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "object not found"


class ChecksumMismatch(StoreError):
    """Bytes did not hash to the SHA-256 they were expected to have."""


class StoreUnavailable(StoreError):
    """The store could not be reached; the operation may succeed if retried."""


class JournalError(EdgeloopError):
    """The event journal could not append or read."""


class ReplicationError(EdgeloopError):
    """Replication could not proceed."""


class FleetError(EdgeloopError):
    """A fleet control-plane request was invalid or could not be done."""


class FleetNotFound(FleetError, KeyError):
    """The named site, deployment, rollout, project or token does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class FleetConflict(FleetError):
    """The request conflicts with the current state (an active rollout, a used join token)."""


class SignatureInvalid(FleetError):
    """A signed document did not verify against the trusted key; it must not be used."""


class RegistryError(EdgeloopError):
    """The model registry could not do what was asked."""


class ModelNotFound(RegistryError, KeyError):
    """The named model, version or alias is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "model not found"


class VersionImmutable(RegistryError):
    """A registered version's package and metadata never change; register a new version."""


class PipelineError(EdgeloopError):
    """A pipeline could not be built, compiled or run."""


class PipelineDefinitionError(PipelineError):
    """A pipeline graph is invalid (a cycle, a missing input, a type mismatch); fix the steps."""


class StepFailed(PipelineError):
    """A step raised on every attempt; the run failed and its record holds the error."""


class MonitoringError(EdgeloopError):
    """Drift or live-quality monitoring could not proceed."""


class EmptySampleError(MonitoringError, ValueError):
    """A drift statistic needs at least one value in each sample."""


class ProfileNotFound(MonitoringError):
    """No reference profile is stored for the model (version) being monitored."""


class ServingError(EdgeloopError):
    """The inference server could not do what was asked."""


class PackageError(ServingError):
    """A model package is malformed, unsafe or failed to load; the message names the file."""


class UntrustedModel(PackageError):
    """A package holds pickle or types outside the allowlist; it is refused, signed or not."""


class PackageVerificationFailed(PackageError):
    """A package's signature, signer, file set or a file hash did not verify; never load it."""


class DowngradeRefused(PackageError):
    """The package's version is older than the one installed; pass the override to roll back."""


class InferenceRequestError(ServingError):
    """An inference request was refused; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ServerOverloaded(ServingError):
    """The request queue is full; the client should retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
