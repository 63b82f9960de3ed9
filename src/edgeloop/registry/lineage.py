"""Lineage of a model version (where it came from) and its text tree; pure values, no I/O."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ObjectRef(BaseModel):
    """One store object a version was made from: its key and SHA-256 (and, if known, site
    and record count)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    site: str | None = None
    records: int | None = Field(default=None, ge=0)


class DatasetRef(BaseModel):
    """The dataset snapshot a version was trained on."""

    model_config = ConfigDict(extra="allow", frozen=True)

    snapshot: str
    key: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    rows: int | None = Field(default=None, ge=0)


class Lineage(BaseModel):
    """Everything needed to say exactly how a version was made; stored in the manifest and
    in the registry database."""

    model_config = ConfigDict(extra="allow", frozen=True)

    captures: list[ObjectRef] = Field(default_factory=list)
    labels: list[ObjectRef] = Field(default_factory=list)
    dataset: DatasetRef | None = None
    parent: int | None = Field(default=None, ge=1, description="the version this one refines")
    pipeline: str | None = None
    run_id: str | None = None
    code_version: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    def merged(self, other: Lineage) -> Lineage:
        """These fields with the ones `other` sets explicitly laid over them."""
        values = self.model_dump()
        values.update(other.model_dump(exclude_unset=True))
        return Lineage.model_validate(values)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values without empty fields."""
        return self.model_dump(mode="json", exclude_none=True)


def render_lineage(ref: str, lineage: Lineage) -> str:
    """The lineage as an indented text tree, one fact a line (what `models show` prints)."""
    lines = [ref]
    sections: list[tuple[str, list[str]]] = []
    if lineage.parent is not None:
        sections.append((f"parent: version {lineage.parent}", []))
    run = lineage.run_id or "-"
    pipeline = lineage.pipeline or "-"
    sections.append((f"pipeline run: {run} (pipeline {pipeline})", []))
    sections.append((f"code version: {lineage.code_version or '-'}", []))
    params = [f"{k} = {v!r}" for k, v in sorted(lineage.parameters.items())]
    sections.append((f"parameters ({len(params)})", params))
    if lineage.dataset is not None:
        d = lineage.dataset
        facts = [f"key: {d.key}"] if d.key else []
        facts += [f"sha256: {d.sha256}"] if d.sha256 else []
        facts += [f"rows: {d.rows}"] if d.rows is not None else []
        sections.append((f"dataset snapshot: {d.snapshot}", facts))
    else:
        sections.append(("dataset snapshot: -", []))
    for title, refs in (("captures", lineage.captures), ("labels", lineage.labels)):
        sections.append((f"{title} ({len(refs)})", [_object_line(r) for r in refs]))
    extra = lineage.model_extra or {}
    for key in sorted(extra):
        sections.append((f"{key}: {extra[key]!r}", []))
    for i, (title, children) in enumerate(sections):
        last = i == len(sections) - 1
        lines.append(("└── " if last else "├── ") + title)
        pad = "    " if last else "│   "
        for j, child in enumerate(children):
            lines.append(pad + ("└── " if j == len(children) - 1 else "├── ") + child)
    return "\n".join(lines)


def _object_line(ref: ObjectRef) -> str:
    extra = []
    if ref.site:
        extra.append(f"site {ref.site}")
    if ref.records is not None:
        extra.append(f"{ref.records} records")
    suffix = f" ({', '.join(extra)})" if extra else ""
    return f"{ref.key} sha256:{ref.sha256}{suffix}"
