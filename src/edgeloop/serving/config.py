"""Settings of one `edgeloop serve` process (passed to worker processes as JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgeloop.serving.capture import FullPolicy

SERVE_CONFIG_ENV = "EDGELOOP_SERVE_CONFIG"


class ServeConfig(BaseModel):
    """Everything a server process needs to start."""

    model_config = ConfigDict(extra="forbid")

    model_dirs: list[Path] = Field(default_factory=list)
    repository: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # Chosen by measurement: uvicorn in every run of benchmarks/serving.py (granian reached
    # 0.71-0.85 of its single-row throughput; docs/benchmarks.md).
    server: Literal["uvicorn", "granian"] = "uvicorn"
    site: str = "local"
    state_dir: Path = Path(".edgeloop-serve")
    token_file: Path | None = None
    # capture
    capture_to: str | None = None
    journal: str | None = None
    """Journal (SQLite path or postgresql:// URL) that records each capture batch written."""
    capture_sample: float = Field(default=1.0, ge=0.0, le=1.0)
    capture_batch_records: int = Field(default=10_000, ge=1)
    capture_batch_seconds: float = Field(default=60.0, gt=0)
    capture_queue: int = Field(default=10_000, ge=1)
    capture_upload_defer: float = Field(default=60.0, ge=0)
    """Longest wait of a sealed batch while the serving CPUs are busy (0: upload at once)."""
    spool_max_bytes: int = Field(default=1024**3, ge=1024)
    spool_full_policy: FullPolicy = FullPolicy.DROP_NEW
    # hot path
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    batching: bool = True
    max_batch_rows: int = Field(default=64, ge=1)
    max_delay_ms: float = Field(default=0.0, ge=0)
    max_queue_rows: int = Field(default=4096, ge=1)
    max_in_flight: int = Field(default=1024, ge=1)
    intra_op_threads: int = Field(default=1, ge=1)
    inter_op_threads: int = Field(default=1, ge=1)
    trusted_types: list[str] = Field(default_factory=list)
    poll_interval: float = Field(default=1.0, gt=0)

    @property
    def resolved_token_file(self) -> Path:
        return self.token_file or self.state_dir / "serving-token"

    @property
    def pins_file(self) -> Path:
        """Where the load API's pins are shared between worker processes."""
        return self.state_dir / "pins.json"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"
