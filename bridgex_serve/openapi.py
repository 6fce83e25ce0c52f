"""The proxy's OpenAPI 3.1 description, served at /openapi.json and used by the fuzz tests.

Request bodies are described loosely where vLLM owns the fields (anything else is relayed) and exactly
where BridgeX reads them (`bridgex`, the translate body). Every error answer is the OpenAI error object.
"""

from __future__ import annotations

from typing import Any

import orjson

from .options import (
    MAX_SHOTS,
    MAX_TIMEOUT,
    MODES,
    ROUTES,
    TASKS,
    TRANSLATE_OPTIONS,
    TRANSLATE_TASKS,
)

CODES = {"type": "string", "minLength": 2, "maxLength": 16}
# Every request option (`options.OPTION_KEYS`; a test keeps the two equal), as `parse_options` accepts it.
OPTIONS: dict[str, Any] = {
    "task": {"enum": list(TASKS)},
    "source": CODES,
    "target": CODES,
    "bridge": CODES,
    "route": {"enum": list(ROUTES)},
    "mode": {"enum": list(MODES)},
    "shots": {"type": "integer", "minimum": 0, "maximum": MAX_SHOTS},
    "passage": {"type": "string"},
    "copy_fallback": {"type": "boolean"},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT},
}
BRIDGEX = {"type": "object", "properties": OPTIONS, "additionalProperties": False}
TEXT_PART = {
    "type": "object",
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    "required": ["type", "text"],
}
MESSAGE = {
    "type": "object",
    "properties": {
        "role": {"enum": ["system", "user", "assistant"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART, "maxItems": 64}]},
    },
    "required": ["role", "content"],
}
SAMPLING = {
    "model": {"type": "string"},
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1 << 20},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "stream": {"type": "boolean"},
    "bridgex": BRIDGEX,
}
ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "integer", "null"]},
            },
            "required": ["message", "type"],
        }
    },
    "required": ["error"],
}
REQUESTS: dict[tuple[str, str], dict[str, Any] | None] = {
    ("post", "/v1/chat/completions"): {
        "type": "object",
        "properties": {
            **SAMPLING,
            "messages": {"type": "array", "items": MESSAGE, "minItems": 1, "maxItems": 512},
        },
        "required": ["model", "messages"],
    },
    ("post", "/v1/completions"): {
        "type": "object",
        "properties": {**SAMPLING, "prompt": {"type": "string"}},
        "required": ["model", "prompt"],
    },
    ("post", "/v1/translate"): {
        "type": "object",
        "properties": {
            "q": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]
            },
            **{k: OPTIONS[k] for k in TRANSLATE_OPTIONS},
            "task": {"enum": list(TRANSLATE_TASKS)},
            "model": {"type": "string"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1 << 20},
        },
        "required": ["q", "target"],
    },
    ("post", "/admin/reload"): None,
    ("get", "/v1/models"): None,
    ("get", "/v1/languages"): None,
    ("get", "/health"): None,
    ("get", "/ready"): None,
    ("get", "/metrics"): None,
    ("get", "/openapi.json"): None,
}
ERROR_STATUSES = ("400", "401", "404", "408", "413", "422", "429", "502", "503", "504")


def schema() -> dict[str, Any]:
    """The OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), body in REQUESTS.items():
        op: dict[str, Any] = {
            "responses": {
                "200": {"description": "OK"},
                **{
                    s: {"description": "error", "content": {"application/json": {"schema": ERROR}}}
                    for s in ERROR_STATUSES
                },
            }
        }
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        if path != "/health":
            op["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "BridgeX proxy", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


DOCUMENT = orjson.dumps(schema())
