"""The Swagger 2.0 spec: valid, secured by the token scheme, every response in the envelope."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


@pytest.fixture
def spec(client):
    response = client.get("/api/swagger.json")
    assert response.status_code == 200
    return response.get_json()


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(spec, schema):
    ref = schema.get("$ref")
    return spec["definitions"][ref.rsplit("/", 1)[-1]] if ref else schema


def test_spec_is_valid_swagger(spec):
    validate(spec)


def test_token_scheme_is_an_api_key_header(spec):
    scheme = spec["securityDefinitions"]["token"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "token")
    assert spec["security"] == [{"token": []}]


def test_every_security_requirement_names_a_defined_scheme(spec):
    defined = set(spec["securityDefinitions"])
    requirements = list(spec.get("security", []))
    for _, _, operation in operations(spec):
        requirements += operation.get("security", [])
    for requirement in requirements:
        assert set(requirement) <= defined


def test_health_operations_are_public(spec):
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert spec["paths"]["/health/live"]["get"]["security"] == []


def test_every_operation_documents_500_with_the_error_envelope(spec):
    for path, method, operation in operations(spec):
        response = operation["responses"].get("500")
        assert response, f"{method.upper()} {path} does not document 500"
        assert resolve(spec, response["schema"])["properties"].keys() >= {"code", "status", "message", "request_id"}


def test_every_response_is_an_envelope(spec):
    for path, method, operation in operations(spec):
        for code, response in operation["responses"].items():
            if code == "204":
                assert "schema" not in response, f"{method.upper()} {path}: 204 has no body"
                continue
            if "schema" not in response:  # a download's bytes, a redirect, or not-modified
                assert operation.get("produces") != ["application/json"] and code in ("200", "206", "302", "304", "416")
                continue
            properties = resolve(spec, response["schema"])["properties"]
            assert {"code", "status", "message"} <= properties.keys(), f"{method.upper()} {path} {code}"
            if code.startswith("2"):
                assert "data" in properties
            else:
                assert {"field", "request_id"} <= properties.keys()


def test_no_field_mask_header_is_documented(spec):
    for _, _, operation in operations(spec):
        assert all(p.get("name") != "X-Fields" for p in operation.get("parameters", []))


def test_docs_off_hides_swagger_ui_and_spec(make_app):
    client = make_app({"api": {"docs": False}}).test_client()
    for path in ("/api/", "/api/swagger.json"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.get_json()["status"] == "NOT_FOUND"
    assert client.get("/api/health/live").status_code == 200


def test_every_secured_operation_answers_401_without_a_token(spec, client):
    """The lock in Swagger UI is true: an operation documented as secured checks the token."""
    secured = [(path, method) for path, method, operation in operations(spec)
               if operation.get("security", spec.get("security"))]
    assert secured
    for path, method in secured:
        url = "/api" + re.sub(r"\{[^}]+\}", "1", path)
        response = getattr(client, method)(url, json={})
        assert response.status_code == 401, f"{method.upper()} {path} answered {response.status_code}"
