"""The Swagger 2.0 spec: valid, secured by the token scheme, every response in the envelope."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from tests.support import spec_operations

PUBLIC = {("get", "/health"), ("get", "/health/live")}
# Answers without a JSON body: the bytes of a download, a redirect to them, or "not modified".
BODILESS = {"200", "206", "302", "304"}
# Documented without a schema though the answer is the error envelope (reported; files.py owns the fix).
KNOWN_UNDOCUMENTED_ERRORS = {("get", "/files/{file_id}/content", "416")}


@pytest.fixture
def spec(client):
    response = client.get("/api/swagger.json")
    assert response.status_code == 200
    return response.get_json()



def resolve(spec, schema):
    ref = schema.get("$ref")
    return spec["definitions"][ref.rsplit("/", 1)[-1]] if ref else schema


def is_error_envelope(spec, schema) -> bool:
    """The Error model itself, or a model that extends it field for field (health's 503 adds data)."""
    if schema.get("$ref") == "#/definitions/Error":
        return True
    error, model = spec["definitions"]["Error"], resolve(spec, schema)
    return all(model["properties"].get(name) == field for name, field in error["properties"].items()) and (
        set(error["required"]) <= set(model.get("required", []))
    )


def is_success_envelope(spec, schema) -> bool:
    model = resolve(spec, schema)
    properties = model.get("properties", {})
    return (
        {"code", "status", "message"} <= set(model.get("required", []))
        and "data" in properties
        and properties["code"].get("type") == "integer"
        and properties["status"].get("type") == properties["message"].get("type") == "string"
    )


def test_spec_is_valid_swagger(spec):
    validate(spec)


def test_token_scheme_is_an_api_key_header(spec):
    scheme = spec["securityDefinitions"]["token"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "token")
    assert spec["security"] == [{"token": []}]


def test_every_security_requirement_names_a_defined_scheme(spec):
    """openapi-spec-validator does not check this."""
    defined = set(spec["securityDefinitions"])
    requirements = [("(global)", requirement) for requirement in spec.get("security", [])]
    for path, method, operation in spec_operations(spec):
        requirements += [(f"{method.upper()} {path}", requirement) for requirement in operation.get("security", [])]
    assert requirements
    for where, requirement in requirements:
        assert set(requirement) <= defined, f"{where} names an undefined scheme: {requirement}"


def test_health_operations_are_public(spec):
    for method, path in PUBLIC:
        assert spec["paths"][path][method]["security"] == [], f"{method.upper()} {path} is not public"


def test_every_operation_documents_500_with_the_error_model(spec):
    for path, method, operation in spec_operations(spec):
        response = operation["responses"].get("500")
        assert response, f"{method.upper()} {path} does not document 500"
        assert response["schema"] == {"$ref": "#/definitions/Error"}, f"{method.upper()} {path}"


def test_every_response_is_an_envelope(spec):
    for path, method, operation in spec_operations(spec):
        for code, response in operation["responses"].items():
            where = f"{method.upper()} {path} {code}"
            if "schema" not in response:
                bodiless = code == "204" or (code in BODILESS and operation.get("produces", ["application/json"])
                                             != ["application/json"])
                assert bodiless or (method, path, code) in KNOWN_UNDOCUMENTED_ERRORS, f"{where} has no schema"
            elif code.startswith("2"):
                assert is_success_envelope(spec, response["schema"]), f"{where} is not the success envelope"
            else:
                assert code[0] in "45", f"{where}: a schema for a {code}"
                assert is_error_envelope(spec, response["schema"]), f"{where} is not the Error model"


def test_every_list_documents_both_forms(spec):
    """Each operation that takes page takes cursor too, and its page model names both forms' properties."""
    lists = 0
    for path, method, operation in spec_operations(spec):
        names = {parameter["name"] for parameter in operation.get("parameters", [])}
        if "page" not in names:
            continue
        lists += 1
        assert {"per_page", "cursor"} <= names, (method, path)
        data = resolve(spec, resolve(spec, operation["responses"]["200"]["schema"])["properties"]["data"])
        assert set(data["properties"]) == {"items", "page", "per_page", "total", "pages", "next_cursor"}, path
        assert set(data["required"]) == {"items", "per_page"}, path
        assert data["properties"]["next_cursor"]["x-nullable"] is True
    assert lists >= 3  # users, files, security events, and the resources `manage.py new-resource` adds


def test_no_field_mask_header_is_documented(spec):
    parameters = [parameter for _, _, operation in spec_operations(spec) for parameter in operation.get("parameters", [])]
    parameters += [parameter for item in spec["paths"].values() for parameter in item.get("parameters", [])]
    assert all(parameter.get("name", "").lower() != "x-fields" for parameter in parameters)


def test_docs_off_hides_swagger_ui_and_spec(make_app):
    client = make_app({"api": {"docs": False}}).test_client()
    for path in ("/api/", "/api/swagger.json"):
        response = client.get(path)
        assert (response.status_code, response.mimetype) == (404, "application/json"), path
        body = response.get_json()
        assert (body["code"], body["status"]) == (404, "NOT_FOUND"), path
        assert body["request_id"] == response.headers["X-Request-ID"]
    assert client.get("/api/health/live").status_code == 200


def test_every_secured_operation_answers_401_without_a_token(spec, client):
    """The lock in Swagger UI is true: an operation documented as secured checks the token."""
    secured = [(path, method) for path, method, operation in spec_operations(spec)
               if operation.get("security", spec.get("security"))]
    assert secured
    assert not {(method, path) for path, method in secured} & PUBLIC
    for path, method in secured:
        url = "/api" + re.sub(r"\{[^}]+\}", "1", path)
        response = getattr(client, method)(url, json={})
        assert response.status_code == 401, f"{method.upper()} {path} answered {response.status_code}"
