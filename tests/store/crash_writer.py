"""Child process for the crash test: overwrite a few keys of a LocalStore forever."""

from __future__ import annotations

import hashlib
import os
import random
import sys

from edgeloop.store import LocalStore

KEYS = [f"captures/m/{i}.bin" for i in range(4)] + ["top.bin"]


def versioned_body(rng: random.Random) -> bytes:
    """Random bytes behind a header naming their length and digest, so a reader can tell a
    whole version from a torn one without trusting the store."""
    body = os.urandom(rng.choice([0, 1, 4096, 65536, 1 << 20, 3 << 20]) + rng.randint(0, 999))
    return f"{len(body)}:{hashlib.sha256(body).hexdigest()}\n".encode() + body


def main(root: str, seed: int) -> None:
    rng = random.Random(seed)
    store = LocalStore(root)
    written = 0
    while True:
        key = rng.choice(KEYS)
        if rng.random() < 0.1:
            store.delete(key)
        else:
            store.put(key, versioned_body(rng))
        written += 1
        if written == 1:
            print("ready", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
