"""Start a server process: build the app from a ServeConfig and run it on uvicorn or granian."""

from __future__ import annotations

import os
from pathlib import Path

from edgeloop.serving.app import ServingApp
from edgeloop.serving.capture import UploaderCommand, open_capture_store
from edgeloop.serving.config import SERVE_CONFIG_ENV, ServeConfig
from edgeloop.serving.package import Verifier
from edgeloop.serving.pins import reset_pins
from edgeloop.serving.repository import ensure_token
from edgeloop.serving.server import ModelServer
from edgeloop.store import ObjectStore, parse_store_url


def capture_target(config: ServeConfig) -> ObjectStore | UploaderCommand | None:
    """Where captures go: an uploader process for a store it can open by URL (the URL is
    checked here, so a bad one stops the server at start); a `memory://` store exists in
    this process only, so a thread of it uploads there."""
    if config.capture_to is None:
        return None
    if parse_store_url(config.capture_to).scheme == "memory":
        return open_capture_store(config.capture_to, config.site, config.journal)
    return UploaderCommand(
        config.capture_to, config.site, config.journal,
        defer_seconds=config.capture_upload_defer, defer_bytes=config.spool_max_bytes // 2,
    )  # fmt: skip


def build_app(config: ServeConfig, *, verify: Verifier | None = None) -> ServingApp:
    """The ASGI app for `config` (the token file is created when missing)."""
    token, _ = ensure_token(config.resolved_token_file)
    server = ModelServer(config, capture_target=capture_target(config), verify=verify)
    return ServingApp(server, token)


def app_from_env() -> ServingApp:
    """Factory for worker processes: the config comes as JSON in $EDGELOOP_SERVE_CONFIG."""
    return build_app(ServeConfig.model_validate_json(os.environ[SERVE_CONFIG_ENV]))


def run(config: ServeConfig) -> None:
    """Serve until interrupted."""
    os.environ[SERVE_CONFIG_ENV] = config.model_dump_json()
    reset_pins(config.pins_file)  # before the workers start: pins last one run
    target = "edgeloop.serving.runner:app_from_env"
    if config.server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian(
            target,
            address=config.host,
            port=config.port,
            interface=Interfaces.ASGI,
            workers=config.workers,
            factory=True,
            log_access=False,
            working_dir=Path.cwd(),
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        target,
        host=config.host,
        port=config.port,
        workers=config.workers,
        factory=True,
        access_log=False,
        lifespan="on",
        log_level="info",
        timeout_graceful_shutdown=10,
    )
