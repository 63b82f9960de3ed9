"""The model package manifest (`edgeloop-model.json`): what a package is, with no I/O."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgeloop.model.events import utcnow

MANIFEST_NAME = "edgeloop-model.json"
SIGNATURE_NAME = "model.sig"
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


class ModelFormat(StrEnum):
    """File formats a package may hold; none of them runs code when loaded."""

    ONNX = "onnx"
    SKOPS = "skops"
    SAFETENSORS = "safetensors"


class Runtime(StrEnum):
    """The runtime that serves a package."""

    ONNX = "onnx"
    SKLEARN = "sklearn"


class Datatype(StrEnum):
    """Open Inference Protocol v2 tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


class TensorSpec(BaseModel):
    """Name, datatype and shape of one input or output tensor; -1 marks a free dimension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    datatype: Datatype
    shape: list[int]

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if any(d < -1 or d == 0 for d in shape):
            raise ValueError("dimensions are positive sizes or -1 (any size)")
        return shape


class ModelCard(BaseModel):
    """Human-facing facts about a model version (a short model card)."""

    model_config = ConfigDict(extra="allow")

    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    owners: list[str] = Field(default_factory=list)
    training_data: str = ""


class ModelManifest(BaseModel):
    """Everything about one model version except its bytes; written as edgeloop-model.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=1, ge=1, le=1)
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int = Field(ge=1)
    format: ModelFormat
    runtime: Runtime
    model_file: str = Field(description="the file inside the package the runtime loads")
    task: str = Field(default="classification", description="classification or regression")
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    feature_names: list[str] = Field(default_factory=list)
    sample_input: dict[str, Any] = Field(
        default_factory=dict, description="input name -> nested list, used to warm up a load"
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    card: ModelCard = Field(default_factory=ModelCard)
    created: datetime = Field(default_factory=utcnow)

    @field_validator("model_file")
    @classmethod
    def _relative_file(cls, value: str) -> str:
        from edgeloop.store.keys import validate_key  # pure string check, no I/O

        validate_key(value)
        if value in (MANIFEST_NAME, SIGNATURE_NAME):
            raise ValueError(f"model_file cannot be {value}")
        return value

    @property
    def ref(self) -> str:
        """`name:version`, how people and logs name a version."""
        return f"{self.name}:{self.version}"
