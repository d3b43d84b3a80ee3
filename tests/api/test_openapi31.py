"""/api/openapi.json: valid OpenAPI 3.1, the same operations as /api/swagger.json, with their meaning kept."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from app.api.openapi31 import to_openapi31
from tests.fixtures.accounts import login
from tests.support import spec_operations


@pytest.fixture
def swagger(client):
    return client.get("/api/swagger.json").get_json()


@pytest.fixture
def spec(client):
    response = client.get("/api/openapi.json")
    assert (response.status_code, response.mimetype) == (200, "application/json")
    return response.get_json()



def walk(value):
    """Every dict in ``value``, at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def test_spec_is_valid_openapi_31(spec):
    assert spec["openapi"] == "3.1.0"
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_the_31_validator_refuses_a_20_document(swagger):
    """The validation above can fail: the 2.0 spec is no 3.1 document."""
    with pytest.raises(OpenAPIValidationError):
        validate(swagger, cls=OpenAPIV31SpecValidator)


def test_it_has_the_same_operations_as_the_swagger_spec(spec, swagger):
    converted = {(path, method): operation for path, method, operation in spec_operations(spec)}
    original = {(path, method): operation for path, method, operation in spec_operations(swagger)}
    assert converted.keys() == original.keys()
    for key, operation in original.items():
        assert converted[key]["operationId"] == operation["operationId"], key
        assert converted[key]["responses"].keys() == operation["responses"].keys(), key
    assert not {"/openapi.json", "/swagger.json"} & set(spec["paths"])


def test_converting_leaves_the_swagger_spec_as_it_was(client):
    before = client.get("/api/swagger.json").get_data()
    assert client.get("/api/openapi.json").status_code == 200
    assert client.get("/api/swagger.json").get_data() == before


def test_the_server_is_the_base_path(spec, swagger):
    assert spec["servers"] == [{"url": swagger["basePath"]}] == [{"url": "/api"}]


def test_it_is_served_as_swagger_json_is(client):
    """The same media type and headers (no-store, nosniff): the spec of this app, not a file."""
    old, new = client.get("/api/swagger.json"), client.get("/api/openapi.json")
    for name in ("Content-Type", "Cache-Control", "X-Content-Type-Options", "Content-Security-Policy"):
        assert new.headers[name] == old.headers[name], name


def test_it_is_converted_once_per_app(app, client):
    api = app.extensions["restx_api"]
    first = client.get("/api/openapi.json").get_data()
    cached = api.__openapi31__
    assert client.get("/api/openapi.json").get_data() == first
    assert api.__openapi31__ is cached
    assert json.loads(first) == cached


def test_docs_off_hides_it_too(make_app):
    client = make_app({"api": {"docs": False}}).test_client()
    response = client.get("/api/openapi.json")
    assert response.status_code == 404
    assert (response.get_json()["code"], response.get_json()["status"]) == (404, "NOT_FOUND")


def test_nullable_fields_are_type_unions(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["User"]["properties"]["email"]["type"] == ["string", "null"]
    assert schemas["User"]["properties"]["last_login_at"] == {"type": ["string", "null"], "format": "date-time"}
    assert schemas["Error"]["properties"]["field"]["type"] == ["string", "null"]
    assert schemas["MfaChallengeOrNullEnvelope"]["properties"]["data"] == {
        "anyOf": [{"$ref": "#/components/schemas/MfaChallenge"}, {"type": "null"}]}
    assert not [item for item in walk(spec) if "x-nullable" in item]


def test_the_upload_is_a_closed_multipart_body_with_a_binary_part(spec):
    body = spec["paths"]["/files/"]["post"]["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["multipart/form-data"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["file"]["type"] == "string"
    assert schema["properties"]["file"]["format"] == "binary"
    assert (schema["required"], schema["additionalProperties"]) == (["file"], False)
    assert not [item for item in walk(spec) if item.get("type") == "file" or "x-closed-form" in item]


def test_json_bodies_are_request_bodies_of_closed_models(spec, swagger):
    closed = {name for name, model in swagger["definitions"].items() if model.get("additionalProperties") is False}
    assert closed
    schemas = spec["components"]["schemas"]
    assert {name for name in closed if schemas[name]["additionalProperties"] is False} == closed
    bodies = 0
    for path, method, operation in spec_operations(spec):
        assert all(parameter["in"] in ("path", "query", "header") for parameter in operation.get("parameters", []))
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            bodies += 1
            name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            assert name in closed, f"{method.upper()} {path}: {name} is not closed"
    assert bodies > 10


def test_parameters_carry_their_schema(spec):
    parameters = {parameter["name"]: parameter for parameter in spec["paths"]["/users/"]["get"]["parameters"]}
    assert parameters["per_page"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert parameters["q"]["schema"] == {"type": "string", "maxLength": 64}
    path_parameter = spec["paths"]["/users/{user_id}"]["parameters"][0]
    assert (path_parameter["in"], path_parameter["required"], path_parameter["schema"]) == (
        "path", True, {"type": "integer"})


def test_examples_are_kept_as_json_schema_examples(spec, swagger):
    assert spec["components"]["schemas"]["Login"]["examples"] == [swagger["definitions"]["Login"]["example"]]
    phone = spec["components"]["schemas"]["SmsSendRequest"]["properties"]["phone"]
    assert phone["examples"] == ["13800138000"]
    assert not [item for item in walk(spec["components"]["schemas"]) if "example" in item]


def test_both_token_schemes_are_defined_and_either_will_do(spec):
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["token"]["type"], schemes["token"]["in"], schemes["token"]["name"]) == ("apiKey", "header", "token")
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{"token": []}, {"bearer": []}]
    assert spec["paths"]["/health"]["get"]["security"] == []


def test_every_security_requirement_names_a_defined_scheme(spec):
    """openapi-spec-validator does not check this."""
    defined = set(spec["components"]["securitySchemes"])
    requirements = [("(global)", requirement) for requirement in spec.get("security", [])]
    for path, method, operation in spec_operations(spec):
        requirements += [(f"{method.upper()} {path}", requirement) for requirement in operation.get("security", [])]
    assert requirements
    for where, requirement in requirements:
        assert set(requirement) <= defined, f"{where} names an undefined scheme: {requirement}"


def test_the_bearer_scheme_is_true(client, make_user):
    """GET /users/me answers a token sent as Authorization: Bearer, and 401 without one."""
    make_user("+8613800138000")
    token = login(client, "+8613800138000")["token"]
    assert client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/users/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401


def test_downloads_keep_their_bytes_undescribed_and_errors_json(spec):
    responses = spec["paths"]["/files/{file_id}/content"]["get"]["responses"]
    assert "content" not in responses["200"]
    assert list(responses["404"]["content"]) == ["application/json"]


def test_what_the_app_does_not_use_converts_too():
    """Array query parameters, a nullable enum, a response with headers and examples, basic and OAuth 2 schemes."""
    swagger = {
        "swagger": "2.0", "info": {"title": "t", "version": "1"}, "host": "api.example.com", "schemes": ["https"],
        "basePath": "/v1",
        "securityDefinitions": {"basic": {"type": "basic"}, "oauth": {
            "type": "oauth2", "flow": "application", "tokenUrl": "https://example.com/token", "scopes": {"r": "read"}}},
        "definitions": {"Mode": {"type": "string", "enum": ["a", "b"], "x-nullable": True}},
        "paths": {"/things": {"get": {
            "parameters": [
                {"name": "ids", "in": "query", "type": "array", "items": {"type": "integer"},
                 "collectionFormat": "multi"},
                {"name": "tags", "in": "query", "type": "array", "items": {"type": "string"}},
                {"name": "X-Trace", "in": "header", "type": "string"}],
            "responses": {"200": {"description": "ok", "schema": {"$ref": "#/definitions/Mode"},
                                  "headers": {"X-Rate": {"type": "integer", "description": "left"}},
                                  "examples": {"application/json": "a"}}},
            "security": [{"oauth": ["r"]}, {"basic": []}],
        }}},
    }
    spec = to_openapi31(swagger)
    validate(spec, cls=OpenAPIV31SpecValidator)
    assert spec["servers"] == [{"url": "https://api.example.com/v1"}]
    assert spec["components"]["schemas"]["Mode"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    ids, tags, trace = spec["paths"]["/things"]["get"]["parameters"]
    assert (ids["style"], ids["explode"], ids["schema"]) == ("form", True, {"type": "array", "items": {"type": "integer"}})
    assert (tags["style"], tags["explode"]) == ("form", False)
    assert trace == {"name": "X-Trace", "in": "header", "schema": {"type": "string"}}
    ok = spec["paths"]["/things"]["get"]["responses"]["200"]
    assert ok["headers"] == {"X-Rate": {"description": "left", "schema": {"type": "integer"}}}
    assert ok["content"]["application/json"] == {"schema": {"$ref": "#/components/schemas/Mode"}, "example": "a"}
    assert spec["components"]["securitySchemes"] == {
        "basic": {"type": "http", "scheme": "basic"},
        "oauth": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "https://example.com/token",
                                                                    "scopes": {"r": "read"}}}}}
