"""Child process for the kill -9 test: registers a package through a store that stalls
before the signature (the last object) is written, after saying READY."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

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


def main() -> None:
    database, store_dir, key, public_file, package, source_key = sys.argv[1:7]
    store = StallingStore(LocalStore(Path(store_dir)))
    registry = Registry(database, store, public_key=Path(public_file).read_text(),  # type: ignore[arg-type]
                        signing_key=Path(key))  # fmt: skip
    registry.register(Path(package), source_key=source_key)


if __name__ == "__main__":
    main()
