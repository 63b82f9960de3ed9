"""The serving benchmark's reference: the least an OIP v2 server can do in Python.

A raw ASGI callable that parses the same OIP v2 JSON with orjson, calls the same
onnxruntime session (same thread settings), and encodes the same response. No routing,
validation, metrics, batching, capture or hot swap.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

HEADERS = [(b"content-type", b"application/json")]


def create_app() -> Any:
    """Factory: the model path comes from $REFERENCE_MODEL."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(os.environ["REFERENCE_MODEL"], sess_options=so,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    names = [o.name for o in session.get_outputs()]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] != "POST":  # health probes
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        doc = orjson.loads(body)
        tensor = doc["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        outputs = session.run(names, {tensor["name"]: x})
        out = {
            "model_name": "bench", "model_version": "1", "id": doc.get("id", ""),
            "outputs": [{"name": n, "datatype": "FP32" if v.dtype == np.float32 else "INT64",
                         "shape": list(v.shape), "data": v.reshape(-1)}
                        for n, v in zip(names, outputs, strict=True)],
        }  # fmt: skip
        payload = orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> None:
    """`python serving_reference.py PORT SERVER`: serve until killed."""
    import sys
    from pathlib import Path

    port, server = int(sys.argv[1]), sys.argv[2]
    here = Path(__file__).parent
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian("serving_reference:create_app", address="127.0.0.1", port=port,
                interface=Interfaces.ASGI, factory=True, working_dir=here,
                log_access=False).serve()  # fmt: skip
    else:
        import uvicorn

        uvicorn.run("serving_reference:create_app", host="127.0.0.1", port=port, factory=True,
                    app_dir=str(here), access_log=False, log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
