"""One supervised child process: started in its own process group with its output appended
to a log file, polled for its exit, stopped with SIGTERM and then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from edgeloop.supervise.spec import ComponentSpec


class ChildProcess:
    """The current run of one component, if any."""

    def __init__(self, spec: ComponentSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self, restarts: int) -> int:
        """Start the component; its stdout and stderr go to the log. Returns the pid."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDGELOOP_NO_PROGRESS": "1"}
        env.update(self.spec.env)
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"=== {stamp} start #{restarts + 1}: {' '.join(self.spec.argv)}\n".encode())
            log.flush()
            # A session of its own: Ctrl-C in the terminal reaches only the supervisor, which
            # then stops the children in order instead of all of them dying at once.
            self.popen = subprocess.Popen(
                list(self.spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.spec.cwd,
                env=env,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit code once the process has exited, else None (also None when not started)."""
        return self.popen.poll() if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to the component's whole process group (its workers too)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def reap_group(self) -> None:
        """After the component exited, SIGKILL what is left of its process group (e.g. server
        workers orphaned by a killed parent), so they cannot hold its port against a restart."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the exit; True when it has exited."""
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds if it is still there."""
        self.signal(signal.SIGTERM)
        if not self.wait(grace):
            self.signal(signal.SIGKILL)
            self.wait(5.0)
        self.reap_group()
