"""Child process for the kill -9 tests: registers a package and stalls, after saying READY,
either before the signature (the last object) is written (`store`) or after the version is
recorded but before `model.registered` is journaled (`event`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from edgeloop.model.events import Event
from edgeloop.model.manifest import SIGNATURE_NAME
from edgeloop.registry import Registry
from edgeloop.store import LocalStore


class StallingStore:
    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.url = inner.url

    def put(self, key: str, data: Any, **kwargs: Any) -> Any:
        if key.endswith(SIGNATURE_NAME):
            print("READY", flush=True)
            time.sleep(600)  # killed here
        return self.inner.put(key, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class StallingSink:
    """An event sink that stalls before journaling anything."""

    def emit(self, event: Event) -> bool:
        print("READY", flush=True)
        time.sleep(600)  # killed here
        return False


def main() -> None:
    database, store_dir, key, public_file, package, source_key = sys.argv[1:7]
    stall = sys.argv[7] if len(sys.argv) > 7 else "store"
    store: Any = LocalStore(Path(store_dir))
    events: Any = None
    if stall == "store":
        store = StallingStore(store)
    else:
        events = StallingSink()
    registry = Registry(database, store, public_key=Path(public_file).read_text(),
                        signing_key=Path(key), events=events)  # fmt: skip
    registry.register(Path(package), source_key=source_key)


if __name__ == "__main__":
    main()
