"""The building blocks of the OpenAPI document's schemas: the plain types and the
helpers that make objects, references and nullable values of them."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BOOLEAN",
    "COUNTS",
    "INTEGER",
    "NUMBER",
    "OBJECT",
    "STRING",
    "STRINGS",
    "TIME",
    "Schema",
    "nullable",
    "obj",
    "ref",
]

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
OBJECT: Schema = {"type": "object"}
TIME: Schema = {"type": "string", "description": "UTC time, ISO 8601"}
STRINGS: Schema = {"type": "array", "items": STRING}
COUNTS: Schema = {"type": "object", "additionalProperties": INTEGER}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], *, required: tuple[str, ...] | None = None) -> Schema:
    """An object with ``properties``, all required unless ``required`` says which."""
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties if required is None else required),
    }
