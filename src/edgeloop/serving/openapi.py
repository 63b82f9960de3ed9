"""The OpenAPI 3.0 document of the server's routes (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

from edgeloop.model.manifest import MODEL_NAME_PATTERN, Datatype

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description or "OK", "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "bad request",
        401: "missing or wrong token",
        404: "unknown model, version or route",
        405: "method not allowed",
        413: "body over the size limit",
        503: "not loaded, or overloaded (see Retry-After)",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


NAME = {"name": "model_name", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN}}  # fmt: skip
VERSION = {"name": "model_version", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}}  # fmt: skip
ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]


def _model_ops(versioned: bool) -> dict[str, dict[str, Any]]:
    params = [NAME, VERSION] if versioned else [NAME]
    base = "/v2/models/{model_name}" + ("/versions/{model_version}" if versioned else "")
    suffix = "Version" if versioned else ""
    return {
        base: {"get": {
            "operationId": f"modelMetadata{suffix}", "summary": "Model metadata",
            "parameters": params,
            "responses": {"200": _json(_ref("ModelMetadata")), **_errors(400, 404)},
        }},
        base + "/ready": {"get": {
            "operationId": f"modelReady{suffix}", "summary": "Model readiness",
            "parameters": params,
            "responses": {"200": _json(_ref("ModelReady")), **_errors(400, 404)},
        }},
        base + "/infer": {"post": {
            "operationId": f"modelInfer{suffix}", "summary": "Inference",
            "parameters": params,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("InferRequest")}}},
            "responses": {
                "200": {**_json(_ref("InferResponse")), "headers": {
                    "X-Model-Version": {"schema": {"type": "string"},
                                        "description": "the version that answered"}}},
                **_errors(400, 404, 413, 503),
            },
        }},
    }  # fmt: skip


def openapi_document(version: str) -> dict[str, Any]:
    """The document; the same for every server process of a version."""
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": [d.value for d in Datatype]},
            "parameters": {"type": "object"},
            "data": {"type": "array", "items": {}},
        },
    }
    spec = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "Tensor": tensor,
        "TensorSpec": spec,
        "InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "minItems": 1, "items": _ref("Tensor")},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "parameters": {"type": "object"},
                        },
                    },
                },
            },
        },
        "InferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "id", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": _ref("Tensor")},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": _ref("TensorSpec")},
                "outputs": {"type": "array", "items": _ref("TensorSpec")},
                "parameters": {"type": "object"},
            },
        },
        "ModelReady": {
            "type": "object",
            "required": ["name", "ready"],
            "properties": {
                "name": {"type": "string"},
                "ready": {"type": "boolean"},
                "version": {"type": "string"},
            },
        },
        "Live": {
            "type": "object",
            "required": ["live"],
            "properties": {"live": {"type": "boolean"}},
        },
        "Ready": {
            "type": "object",
            "required": ["ready"],
            "properties": {"ready": {"type": "boolean"}},
        },
        "ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Feedback": {
            "type": "object",
            "properties": {
                "request_id": {"type": "string"},
                "label": {},
                "labels": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["request_id", "label"],
                        "properties": {"request_id": {"type": "string"}, "label": {}},
                    },
                },
            },
        },
        "FeedbackAccepted": {
            "type": "object",
            "required": ["accepted"],
            "properties": {"accepted": {"type": "integer"}},
        },
        "RepositoryIndex": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "version", "state"],
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "state": {"type": "string", "enum": ["READY", "UNAVAILABLE"]},
                    "reason": {"type": "string"},
                },
            },
        },
        "LoadRequest": {
            "type": "object",
            "properties": {
                "parameters": {
                    "type": "object",
                    "properties": {"version": {"type": "integer", "minimum": 1}},
                }
            },
        },
        "LoadResult": {
            "type": "object",
            "required": ["name", "state"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "state": {"type": "string"},
            },
        },
        "Status": {
            "type": "object",
            "required": ["site", "models"],
            "properties": {
                "site": {"type": "string"},
                "started": {"type": "number"},
                "pid": {"type": "integer", "description": "the worker process that answered"},
                "models": {"type": "object"},
                "capture": {"type": "object", "nullable": True},
            },
        },
    }
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": {
            "operationId": "serverLive", "summary": "Liveness",
            "responses": {"200": _json(_ref("Live"))}}},
        "/v2/health/ready": {"get": {
            "operationId": "serverReady", "summary": "Readiness: every wanted model serving",
            "responses": {"200": _json(_ref("Ready")), "503": _json(_ref("Ready"), "not ready")}}},
        "/v2": {"get": {
            "operationId": "serverMetadata", "summary": "Server metadata",
            "responses": {"200": _json(_ref("ServerMetadata"))}}},
        **_model_ops(False),
        **_model_ops(True),
        "/v2/models/{model_name}/feedback": {"post": {
            "operationId": "modelFeedback", "summary": "Labels for earlier requests, by id",
            "parameters": [NAME],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("Feedback")}}},
            "responses": {"200": _json(_ref("FeedbackAccepted")), **_errors(400, 404, 413, 503)},
        }},
        "/v2/repository/index": {"post": {
            "operationId": "repositoryIndex", "summary": "Models and versions, loaded or not",
            "security": ADMIN,
            "responses": {"200": _json(_ref("RepositoryIndex")), **_errors(401, 413)},
        }},
        "/v2/repository/models/{model_name}/load": {"post": {
            "operationId": "repositoryLoad",
            "summary": "Load (hot swap to) a version; default the newest",
            "security": ADMIN, "parameters": [NAME],
            "requestBody": {"required": False,
                            "content": {"application/json": {"schema": _ref("LoadRequest")}}},
            "responses": {"200": _json(_ref("LoadResult")), **_errors(400, 401, 413)},
        }},
        "/v2/repository/models/{model_name}/unload": {"post": {
            "operationId": "repositoryUnload", "summary": "Stop serving a model",
            "security": ADMIN, "parameters": [NAME],
            "responses": {"200": _json(_ref("LoadResult")), **_errors(400, 401, 413)},
        }},
        "/v2/status": {"get": {
            "operationId": "serverStatus",
            "summary": "Loaded versions, last swap outcome per model, capture health",
            "security": ADMIN,
            "responses": {"200": _json(_ref("Status")), **_errors(401)},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
    }  # fmt: skip
    return {
        "openapi": "3.0.3",
        "info": {"title": "edgeloop inference server (Open Inference Protocol v2)",
                 "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }  # fmt: skip
