"""The control plane served from a thread of another process (`edgeloop core` runs it beside
its trigger worker), on uvicorn, until stopped."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from edgeloop.errors import ConfigError
from edgeloop.fleet.app import KEEP_ALIVE_SECONDS, create_control_app
from edgeloop.fleet.control import ControlPlane, ControlSettings, build_control_plane
from edgeloop.workspace.workspace import Workspace

DEFAULT_CONTROL_PORT = 8700

if TYPE_CHECKING:
    import uvicorn


class ControlPlaneThread:
    """Serves the control plane of `settings` on `host:port` from a background thread."""

    def __init__(self, settings: ControlSettings, *, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.plane: ControlPlane | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ControlPlane:
        """Build the plane (minting the first admin token if needed) and wait until it listens."""
        import uvicorn

        plane = build_control_plane(self.settings)
        server = uvicorn.Server(
            uvicorn.Config(
                create_control_app(self.settings, plane=plane),
                host=self.host,
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                timeout_graceful_shutdown=3,
            )
        )
        # uvicorn installs no signal handlers outside the main thread: the owner stops it.
        thread = threading.Thread(target=server.run, name="edgeloop-control-plane", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise ConfigError(
                    f"the control plane could not listen on {self.host}:{self.port} (in use?); "
                    "pick another with --control-port or control_port in edgeloop.yaml"
                )
            time.sleep(0.02)
        self.plane, self._server, self._thread = plane, server, thread
        return plane

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self.plane is not None:
            self.plane.engine.dispose()
        self._server, self._thread = None, None


def control_plane_for_workspace(
    workspace: Workspace, site: str | None, *, host: str, port: int | None
) -> ControlPlaneThread:
    """The (not yet started) control plane of a workspace's core, on `port` or the core
    site's `control_port` (default 8700)."""
    settings = ControlSettings.for_workspace(workspace, site)
    port = port or workspace.site(settings.core_site).control_port or DEFAULT_CONTROL_PORT
    return ControlPlaneThread(settings, host=host, port=port)
