"""Pins shared by the worker processes of one server: which version of a model the load API
asked for, or that it was unloaded. Each worker answers the API for itself; the others read
this file on every repository poll and follow it, so all of them serve the same version."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

# name -> version to serve, or None: unloaded on purpose. A name not present follows the
# newest version in the repository.
Pins = dict[str, int | None]


def read_pins(path: Path) -> Pins:
    """The pins in `path` ({} when there is none); a damaged file is logged and ignored."""
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("ignoring unreadable pins file %s: %s", path, exc)
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        str(name): value
        for name, value in raw.items()
        if value is None or (isinstance(value, int) and not isinstance(value, bool))
    }


def write_pin(path: Path, name: str, version: int | None, *, unpin: bool = False) -> Pins:
    """Set (or with `unpin`, remove) the pin of `name`, under a lock so workers answering the
    API at the same time do not lose each other's pins; returns the pins now in the file."""
    with _locked(path):
        pins = read_pins(path)
        if unpin:
            pins.pop(name, None)
        else:
            pins[name] = version
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps(pins, option=orjson.OPT_SORT_KEYS))
        tmp.replace(path)  # readers see the old file or the new one, never half of one
        return pins


def reset_pins(path: Path) -> None:
    """Start a server run with no pins (they last as long as the run that set them)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
