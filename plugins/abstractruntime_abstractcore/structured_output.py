"""Structured output of LLM_CALL (integration spec §2.7 steps 10, 13, 14): ``response_schema`` normalisation, the
Pydantic response model AbstractCore is given, and the tolerant JSON parse of a text answer.

* :func:`normalize_response_schema` accepts a JSON-Schema object, a JSON string, the OpenAI wrappers
  (``response_format`` / ``{type: json_schema, json_schema: {schema}}`` / ``{schema: {...}}``) or a *field map*
  (``{"choice": "what to pick", "score": 0}``: every key a required property typed after its value).
* :func:`response_model_for_schema` builds the Pydantic model (``enum`` -> ``Literal``, type lists -> unions,
  nested objects -> nested models ``<Parent>_<prop>``); a schema it cannot express raises
  :class:`~.errors.ResponseSchemaError` (a ``ValueError``), which fails the effect.
* :func:`parse_json_content` reads JSON out of a text answer (code fences, an object embedded in prose, Python
  literals); a result that is not an object is wrapped as ``{"value": x}``.

Pydantic is imported on first use (AbstractCore depends on it).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Dict, List, Optional

from .errors import ResponseSchemaError

_SCHEMA_KEYS = ("$schema", "$id", "$ref", "$defs", "definitions", "oneOf", "anyOf", "allOf", "enum", "const", "items")
_PRIMITIVES = {"object", "array", "string", "number", "integer", "boolean", "null"}
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def looks_like_schema(value: Any) -> bool:
    """A dict that is a JSON Schema rather than a field map."""
    if not isinstance(value, dict):
        return False
    if any(k in value for k in _SCHEMA_KEYS):
        return True
    if isinstance(value.get("required"), list) or isinstance(value.get("properties"), dict):
        return True
    kind = value.get("type")
    if isinstance(kind, str):
        return kind in _PRIMITIVES
    return isinstance(kind, list) and bool(kind) and all(isinstance(k, str) and k in _PRIMITIVES for k in kind)


def _infer(value: Any) -> Dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string", "description": value}
    if isinstance(value, list):
        first = next((v for v in value if v is not None), None)
        return {"type": "array", "items": _infer(first) if first is not None else {}}
    if isinstance(value, dict):
        return _field_map(value)
    return {}


def _field_map(fields: Dict[str, Any]) -> Dict[str, Any]:
    props = {str(k).strip(): _infer(v) for k, v in fields.items() if str(k).strip()}
    return {"type": "object", "properties": props, "required": list(props)}


def normalize_response_schema(value: Any) -> Optional[Dict[str, Any]]:
    """The JSON-Schema object of ``response_schema``; None for no structured output (missing, blank, invalid)."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or not value:
        return None
    for wrapper in ("response_format", "responseFormat"):
        if wrapper in value:
            return normalize_response_schema(value[wrapper])
    inner = value.get("json_schema")
    if isinstance(inner, dict) and (value.get("type") == "json_schema" or "schema" in inner):
        return normalize_response_schema(inner.get("schema", inner))
    if isinstance(value.get("schema"), dict) and not looks_like_schema(value):
        return normalize_response_schema(value["schema"])
    if looks_like_schema(value):
        schema = dict(value)
        if isinstance(schema.get("properties"), dict) and "type" not in schema:
            schema["type"] = "object"
        return schema
    schema = _field_map(value)
    return schema if schema["properties"] else None


# --- the Pydantic model -------------------------------------------------------------------------------------------
def _annotation(schema: Any, name: str) -> Any:
    from typing import Any as AnyType, Literal, Union

    if not isinstance(schema, dict):
        return AnyType
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        try:
            return Literal.__getitem__(tuple(enum))
        except TypeError:  # unhashable enum values
            return AnyType
    kind = schema.get("type")
    if isinstance(kind, list):
        members = [type(None) if k == "null" else _annotation({**schema, "type": k}, name) for k in kind]
        return Union[tuple(members)] if members else AnyType
    if kind == "string":
        return str
    if kind == "integer":
        return int
    if kind == "number":
        return float
    if kind == "boolean":
        return bool
    if kind == "null":
        return type(None)
    if kind == "array":
        return List[_annotation(schema.get("items"), f"{name}_item")]  # type: ignore[misc]
    if kind == "object" or isinstance(schema.get("properties"), dict):
        if isinstance(schema.get("properties"), dict) and schema["properties"]:
            return _model(schema, name)
        return Dict[str, AnyType]
    return AnyType


def _model(schema: Dict[str, Any], name: str) -> Any:
    from typing import Optional as Opt

    from pydantic import Field, create_model

    required = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
    fields: Dict[str, Any] = {}
    for prop, sub in schema["properties"].items():
        if not isinstance(prop, str) or not prop.isidentifier():
            raise ResponseSchemaError(
                f"Invalid property name '{prop}'. Property names of response_schema must be Python identifiers "
                f"(letters, digits and underscores, not starting with a digit); rename the property.")
        annotation = _annotation(sub, f"{name}_{prop}")
        description = sub.get("description") if isinstance(sub, dict) else None
        extra = {"description": description} if isinstance(description, str) else {}
        if prop in required:
            fields[prop] = (annotation, Field(..., **extra))
        else:
            fields[prop] = (Opt[annotation], Field(None, **extra))
    return create_model(name, **fields)


def response_model_for_schema(schema: Dict[str, Any], name: Any = None) -> Any:
    """A Pydantic model class for an object schema, named ``name`` (non-blank) or ``StructuredOutput``."""
    if not isinstance(schema, dict) or schema.get("type") not in ("object", None):
        raise ResponseSchemaError("response_schema must be a JSON schema object (type 'object' with properties)")
    if not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        raise ResponseSchemaError("response_schema must define properties (a non-empty 'properties' object)")
    title = name.strip() if isinstance(name, str) and name.strip() else "StructuredOutput"
    return _model(schema, title)


# --- reading an answer --------------------------------------------------------------------------------------------
def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if start != -1 and end > start:
            chunk = text[start:end + 1]
            try:
                return json.loads(chunk)
            except ValueError:
                try:
                    return ast.literal_eval(chunk)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ResponseSchemaError(f"the answer is not JSON: {text[:80]!r}") from None


def parse_json_content(text: str) -> Dict[str, Any]:
    """The JSON object in a text answer (fences and surrounding prose tolerated); non-objects -> ``{"value": x}``.
    Raises :class:`~.errors.ResponseSchemaError` when nothing parses."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    value = _loads(fenced.group(1).strip() if fenced else stripped)
    return value if isinstance(value, dict) else {"value": value}


def looks_like_validation_error(exc: BaseException) -> bool:
    """A Pydantic ``ValidationError`` or an error text AbstractCore uses for failed structured output."""
    try:
        from pydantic import ValidationError as PydanticValidationError

        if isinstance(exc, PydanticValidationError):
            return True
    except ImportError:  # pragma: no cover - pydantic comes with AbstractCore
        pass
    text = str(exc).lower()
    return "validation errors for" in text or "structured output generation failed" in text


__all__ = ["looks_like_schema", "normalize_response_schema", "response_model_for_schema", "parse_json_content",
           "looks_like_validation_error"]
