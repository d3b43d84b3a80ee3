"""OpenAPI 3.1 from the Swagger 2.0 spec that flask-restx writes: the same operations and the same meaning, in 3.1's
own terms where 2.0 needs an extension or has no words at all.

- ``x-nullable: true`` becomes a type union with ``"null"`` (``anyOf`` with ``{"type": "null"}`` around a ``$ref``);
- ``in: body`` becomes a ``requestBody``; ``in: formData`` a form ``requestBody`` whose ``type: file`` parts are
  ``{"type": "string", "format": "binary"}``, closed (``additionalProperties: false``) when its parts say
  ``x-closed-form``; responses' ``schema`` a ``content`` per media type produced;
- ``definitions``, ``responses``, ``parameters`` and ``securityDefinitions`` move under ``components``;
- a schema's ``example`` becomes JSON Schema's ``examples`` list; ``additionalProperties: false`` stays;
- a scheme may be accepted in several forms (our token also as ``Authorization: Bearer``): ``extra_schemes``
  names the 3.1 schemes that stand in for a 2.0 one, and each requirement of it gets them as alternatives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.api.validation import CLOSED_FORM

OPENAPI_VERSION = "3.1.0"
REFS = {"#/definitions/": "#/components/schemas/", "#/responses/": "#/components/responses/",
        "#/parameters/": "#/components/parameters/"}
SCHEMA_MAPS = ("properties", "patternProperties")  # name → schema
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SCHEMA_ONE = ("items", "additionalProperties", "not")  # a schema (additionalProperties may be a boolean)
ANNOTATIONS = ("title", "description", "default", "examples", "readOnly", "writeOnly", "deprecated")
PARAMETER_FIELDS = {"name", "in", "description", "required", "allowEmptyValue", "deprecated"}
# What a form part's schema leaves out.
NOT_SCHEMA = {"name", "in", "required", "allowEmptyValue", "collectionFormat", CLOSED_FORM}
COLLECTION_STYLES = {"csv": ("form", False), "ssv": ("spaceDelimited", False), "pipes": ("pipeDelimited", False),
                     "multi": ("form", True)}  # 2.0 query arrays → 3.1 (style, explode)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
OAUTH_FLOWS = {"implicit": "implicit", "password": "password", "application": "clientCredentials",
               "accessCode": "authorizationCode"}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


def ref31(ref: str) -> str:
    """A 2.0 reference, pointed at where 3.1 keeps the same thing."""
    for old, new in REFS.items():
        if ref.startswith(old):
            return new + ref[len(old):]
    return ref


def schema31(schema: Any) -> Any:
    """A 2.0 schema as a JSON Schema 2020-12 one (what 3.1 uses); ``schema`` itself is left alone."""
    if not isinstance(schema, dict):
        return schema  # additionalProperties: false, or true
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref":
            converted[key] = ref31(value)
        elif key in SCHEMA_MAPS:
            converted[key] = {name: schema31(item) for name, item in value.items()}
        elif key in SCHEMA_LISTS:
            converted[key] = [schema31(item) for item in value]
        elif key in SCHEMA_ONE:
            converted[key] = schema31(value)
        elif key == "example":
            converted["examples"] = [value]
        elif key == "type" and value == "file":
            converted.update({"type": "string", "format": "binary"})
        elif key == "format" and schema.get("type") == "file":
            continue
        elif key == "discriminator" and isinstance(value, str):
            converted[key] = {"propertyName": value}
        elif key != "x-nullable":
            converted[key] = value
    return nullable(converted) if schema.get("x-nullable") else converted


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null: a type union where the schema names its type, else ``anyOf`` with the null type."""
    kind = schema.get("type")
    if kind is not None and "$ref" not in schema and not any(key in schema for key in SCHEMA_LISTS):
        kinds = kind if isinstance(kind, list) else [kind]
        schema["type"] = kinds if "null" in kinds else [*kinds, "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    outer = {key: schema.pop(key) for key in ANNOTATIONS if key in schema}
    return {**outer, "anyOf": [schema, {"type": "null"}]}


def parameter31(parameter: dict[str, Any]) -> dict[str, Any]:
    """A query, path or header parameter: its type and bounds move into ``schema``, arrays get a style."""
    if "$ref" in parameter:
        return {"$ref": ref31(parameter["$ref"])}
    converted = {key: value for key, value in parameter.items() if key in PARAMETER_FIELDS or key.startswith("x-")}
    converted["schema"] = schema31({key: value for key, value in parameter.items()
                                    if key not in PARAMETER_FIELDS and key != "collectionFormat"
                                    and not key.startswith("x-")})
    if parameter.get("in") == "query" and parameter.get("type") == "array":
        style, explode = COLLECTION_STYLES.get(parameter.get("collectionFormat", "csv"), ("form", False))
        converted.update(style=style, explode=explode)
    return converted


def request_body(parameters: list[dict[str, Any]], consumes: list[str]) -> dict[str, Any] | None:
    """The ``requestBody`` that the ``body`` parameter or the ``formData`` parameters stand for, if any."""
    body = next((parameter for parameter in parameters if parameter.get("in") == "body"), None)
    if body is not None:
        converted = {"content": {media: {"schema": schema31(body["schema"])} for media in consumes},
                     "required": bool(body.get("required"))}
        return {"description": body["description"], **converted} if "description" in body else converted
    parts = [parameter for parameter in parameters if parameter.get("in") == "formData"]
    if not parts:
        return None
    schema: dict[str, Any] = {"type": "object", "properties": {
        part["name"]: schema31({key: value for key, value in part.items() if key not in NOT_SCHEMA})
        for part in parts}}
    required = [part["name"] for part in parts if part.get("required")]
    if required:
        schema["required"] = required
    if any(part.get(CLOSED_FORM) for part in parts):
        schema["additionalProperties"] = False
    has_file = any(part.get("type") == "file" for part in parts)
    media_types = [media for media in consumes if media in FORM_TYPES] or [FORM_TYPES[0 if has_file else 1]]
    return {"content": {media: {"schema": schema} for media in media_types}, "required": bool(required)}


def response31(response: dict[str, Any], produces: list[str]) -> dict[str, Any]:
    """A response: its ``schema`` (and ``examples``) under ``content`` for each media type produced."""
    if "$ref" in response:
        return {"$ref": ref31(response["$ref"])}
    converted: dict[str, Any] = {"description": response.get("description", "")}
    if "headers" in response:
        converted["headers"] = {name: header31(header) for name, header in response["headers"].items()}
    if "schema" in response:
        examples = response.get("examples", {})
        converted["content"] = {media: {"schema": schema31(response["schema"]),
                                        **({"example": examples[media]} if media in examples else {})}
                                for media in typed(produces)}
    converted.update({key: value for key, value in response.items() if key.startswith("x-")})
    return converted


def typed(produces: list[str]) -> list[str]:
    """The media types a response with a schema is in: what the operation produces, where ``*/*`` (the bytes of a
    download, whatever their type) means JSON, the only type a body meeting a schema comes in."""
    return [media for media in produces if media != "*/*"] or ["application/json"]


def header31(header: dict[str, Any]) -> dict[str, Any]:
    converted = {"schema": schema31({key: value for key, value in header.items() if key != "description"})}
    return {"description": header["description"], **converted} if "description" in header else converted


def scheme31(scheme: dict[str, Any]) -> dict[str, Any]:
    """A security definition as a 3.1 security scheme (``apiKey`` is the same in both)."""
    described = {"description": scheme["description"]} if "description" in scheme else {}
    if scheme["type"] == "basic":
        return {"type": "http", "scheme": "basic", **described}
    if scheme["type"] == "oauth2":
        flow = {key: scheme[key] for key in ("authorizationUrl", "tokenUrl") if key in scheme}
        return {"type": "oauth2", "flows": {OAUTH_FLOWS[scheme["flow"]]: {**flow, "scopes": scheme.get("scopes", {})}},
                **described}
    return dict(scheme)


def requirements31(requirements: Iterable[dict[str, list]], also_accepted: Mapping[str, Iterable[str]]) -> list:
    """Security requirements, each followed by its copies with a 2.0 scheme replaced by one that stands in for it."""
    converted = []
    for requirement in requirements:
        converted.append(requirement)
        for name, alternatives in also_accepted.items():
            if name in requirement:
                converted += [{(alternative if key == name else key): scopes for key, scopes in requirement.items()}
                              for alternative in alternatives]
    return converted


def operation31(operation: dict[str, Any], spec: dict[str, Any], also_accepted: Mapping[str, Iterable[str]]) -> dict:
    parameters = operation.get("parameters", [])
    converted = {key: value for key, value in operation.items()
                 if key not in ("parameters", "responses", "consumes", "produces", "schemes", "security")}
    plain = [parameter31(parameter) for parameter in parameters if parameter.get("in") not in ("body", "formData")]
    if plain:
        converted["parameters"] = plain
    body = request_body(parameters, operation.get("consumes", spec.get("consumes", ["application/json"])))
    if body is not None:
        converted["requestBody"] = body
    produces = operation.get("produces", spec.get("produces", ["application/json"]))
    converted["responses"] = {code: response31(response, produces)
                              for code, response in operation.get("responses", {}).items()}
    if "security" in operation:
        converted["security"] = requirements31(operation["security"], also_accepted)
    return converted


def path_item31(item: dict[str, Any], spec: dict[str, Any], also_accepted: Mapping[str, Iterable[str]]) -> dict:
    converted: dict[str, Any] = {}
    for key, value in item.items():
        if key in METHODS:
            converted[key] = operation31(value, spec, also_accepted)
        elif key == "parameters":
            converted[key] = [parameter31(parameter) for parameter in value]
        else:
            converted[key] = value
    return converted


def to_openapi31(spec: dict[str, Any], extra_schemes: Mapping[str, tuple[str, dict[str, Any]]] | None = None) -> dict:
    """The 3.1 document of the 2.0 ``spec``. ``extra_schemes`` maps a 3.1 scheme name to (the 2.0 scheme it is
    another form of, its 3.1 definition): defined beside it and accepted wherever it is."""
    extra_schemes = extra_schemes or {}
    also_accepted: dict[str, list[str]] = {}
    for name, (stands_for, _) in extra_schemes.items():
        also_accepted.setdefault(stands_for, []).append(name)
    schemes = {name: scheme31(scheme) for name, scheme in spec.get("securityDefinitions", {}).items()}
    schemes.update({name: definition for name, (_, definition) in extra_schemes.items()})
    components = {
        "schemas": {name: schema31(schema) for name, schema in spec.get("definitions", {}).items()},
        "responses": {name: response31(response, spec.get("produces", ["application/json"]))
                      for name, response in spec.get("responses", {}).items()},
        "parameters": {name: parameter31(parameter) for name, parameter in spec.get("parameters", {}).items()
                       if parameter.get("in") not in ("body", "formData")},
        "securitySchemes": schemes,
    }
    host = f"{spec.get('schemes', ['https'])[0]}://{spec['host']}" if "host" in spec else ""
    document: dict[str, Any] = {"openapi": OPENAPI_VERSION, "info": spec["info"],
                                "servers": [{"url": host + spec.get("basePath", "/")}]}
    document.update({key: spec[key] for key in ("tags", "externalDocs") if key in spec})
    document["paths"] = {path: path_item31(item, spec, also_accepted) for path, item in spec["paths"].items()}
    document["components"] = {key: value for key, value in components.items() if value}
    if "security" in spec:
        document["security"] = requirements31(spec["security"], also_accepted)
    document.update({key: value for key, value in spec.items() if key.startswith("x-")})
    return document
