"""`edgeloop serve`: the Open Inference Protocol v2 server with hot swap and data capture."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeloop.cli.common import err_console, friendly_errors
from edgeloop.errors import ConfigError
from edgeloop.serving.capture import FullPolicy
from edgeloop.serving.config import ServeConfig
from edgeloop.workspace import Workspace
from edgeloop.workspace.loader import CONFIG_NAME


def serve(
    model_dirs: list[Path] = typer.Argument(
        None,
        help="Model package directories to serve (each holds edgeloop-model.json).",
        exists=True,
        file_okay=False,
        show_default=False,
    ),
    repository: Path | None = typer.Option(
        None,
        "--repository",
        "-r",
        file_okay=False,
        help="Repository directory <model>/<version>/; each model serves its newest version and "
        "a new version directory renamed in is hot-swapped in.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int | None = typer.Option(
        None, "--port", "-p", help="Port (default: the site's serving_port, else 8080)."
    ),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Server processes."),
    server: str = typer.Option(
        "uvicorn",
        "--server",
        help="ASGI server: uvicorn (default, the faster in docs/benchmarks.md) or granian.",
    ),
    site: str | None = typer.Option(
        None,
        "--site",
        help="Site name; in a workspace, captures go to the site's store and "
        "are journaled as object.created events.",
    ),
    workspace: Path | None = typer.Option(
        None, "--workspace", "-w", help="Workspace directory (default: $EDGELOOP_WORKSPACE or .)."
    ),
    capture_to: str | None = typer.Option(
        None,
        "--capture-to",
        help="Store URL for captures (file://, s3://); default: the site's "
        "store in a workspace, else capture is off.",
    ),
    capture_sample: float = typer.Option(
        1.0, "--capture-sample", min=0.0, max=1.0, help="Share of requests captured (0 to 1)."
    ),
    capture_batch_records: int = typer.Option(
        10_000, "--capture-batch-records", min=1, help="Records per Parquet batch (N)."
    ),
    capture_batch_seconds: float = typer.Option(
        60.0, "--capture-batch-seconds", min=0.001, help="Seconds before a batch closes (T)."
    ),
    capture_upload_defer: float = typer.Option(
        60.0,
        "--capture-upload-defer",
        min=0.0,
        help="While the serving CPUs are over 90% busy, capture uploads wait up to this many "
        "seconds (and while the spool is under half full); 0 uploads at once.",
    ),
    spool_max_bytes: int = typer.Option(
        1024**3, "--spool-max-bytes", min=1024, help="Size limit of the on-disk capture spool."
    ),
    spool_full_policy: FullPolicy = typer.Option(
        FullPolicy.DROP_NEW,
        "--spool-full-policy",
        help="When the spool is full: drop-new keeps what is spooled, drop-oldest makes room.",
    ),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="Spool, token and load-API pins directory (default: the site's state dir in "
        "a workspace, else ./.edgeloop-serve).",
    ),
    token_file: Path | None = typer.Option(
        None,
        "--token-file",
        help="Bearer token for the repository API (created 0600 when "
        "missing; default: <state-dir>/serving-token).",
    ),
    max_body_bytes: int = typer.Option(
        16 * 1024 * 1024, "--max-body-bytes", min=1024, help="Largest request body accepted."
    ),
    batching: bool = typer.Option(
        True, "--batching/--no-batching", help="Adaptive micro-batching of queued requests."
    ),
    max_batch_rows: int = typer.Option(64, "--max-batch-rows", min=1, help="Rows per batch."),
    max_delay_ms: float = typer.Option(
        0.0, "--max-delay-ms", min=0.0, help="Wait this long for a batch to fill (under load)."
    ),
    max_queue_rows: int = typer.Option(
        4096, "--max-queue-rows", min=1, help="Queued rows per model before answering 503."
    ),
    max_in_flight: int = typer.Option(
        1024, "--max-in-flight", min=1, help="Inference requests in progress before answering 503."
    ),
    intra_op_threads: int = typer.Option(
        1, "--intra-op-threads", min=1, help="onnxruntime threads per model call."
    ),
    trust_type: list[str] = typer.Option(
        [], "--trust-type", help="Extra skops type to trust (repeatable); know what it runs."
    ),
    poll_interval: float = typer.Option(
        1.0, "--poll-interval", min=0.05, help="Seconds between repository scans."
    ),
) -> None:
    """Serve models over the Open Inference Protocol v2 (REST) with hot swap and capture."""
    with friendly_errors():
        if not model_dirs and repository is None:
            raise ConfigError("give MODEL_DIR arguments, --repository DIR, or both")
        if server not in ("granian", "uvicorn"):
            raise ConfigError(f"--server must be granian or uvicorn, not {server!r}")
        journal = None
        ws = _workspace(workspace) if site else None
        if ws is not None and site is not None:
            site_config = ws.site(site)
            port = port or site_config.serving_port
            state_dir = state_dir or ws.state_dir(site) / "serving"
            if capture_to is None:
                store = site_config.store
                capture_to = store if "://" in store else str(ws.root / store)
            journal = ws.journal_url(site)
        state = (state_dir or Path(".edgeloop-serve")).absolute()
        config = ServeConfig(
            model_dirs=[p.absolute() for p in model_dirs or []],
            repository=repository.absolute() if repository else None,
            host=host, port=port or 8080, workers=workers, server=server,
            site=site or "local", state_dir=state, token_file=token_file,
            capture_to=capture_to, journal=journal, capture_sample=capture_sample,
            capture_batch_records=capture_batch_records,
            capture_batch_seconds=capture_batch_seconds,
            capture_upload_defer=capture_upload_defer,
            spool_max_bytes=spool_max_bytes, spool_full_policy=spool_full_policy,
            max_body_bytes=max_body_bytes, batching=batching, max_batch_rows=max_batch_rows,
            max_delay_ms=max_delay_ms, max_queue_rows=max_queue_rows,
            max_in_flight=max_in_flight,
            intra_op_threads=intra_op_threads, trusted_types=trust_type,
            poll_interval=poll_interval,
        )  # fmt: skip
        from edgeloop.serving.repository import ensure_token
        from edgeloop.serving.runner import run

        _, created = ensure_token(config.resolved_token_file)
        verb = "minted a new" if created else "using the"
        err_console.print(
            f"repository API token: {verb} token in {config.resolved_token_file}", highlight=False
        )
        if capture_to is None:
            err_console.print("capture is off (no --capture-to and no workspace site)")
        run(config)


def _workspace(path: Path | None) -> Workspace | None:
    from edgeloop.settings import get_settings

    root = path or get_settings().workspace
    if not (root / CONFIG_NAME).exists() and not root.is_file():
        return None
    return Workspace.load(root)
