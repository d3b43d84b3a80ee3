"""Statuses the server can answer on any operation are in the spec: 413 everywhere, and 416's own status name."""

from __future__ import annotations

from tests.support import spec_operations


def test_every_operation_documents_413_with_the_error_model(client):
    spec = client.get("/api/swagger.json").get_json()
    for path, method, operation in spec_operations(spec):
        response = operation["responses"].get("413")
        assert response and response["schema"] == {"$ref": "#/definitions/Error"}, f"{method.upper()} {path}"


def test_the_download_documents_416_with_the_error_model(client):
    spec = client.get("/api/swagger.json").get_json()
    response = spec["paths"]["/files/{file_id}/content"]["get"]["responses"]["416"]
    assert response["schema"] == {"$ref": "#/definitions/Error"}


def test_the_qiniu_callback_documents_its_form_fields(client):
    spec = client.get("/api/swagger.json").get_json()
    operation = spec["paths"]["/files/qiniu/callback"]["post"]
    fields = {p["name"]: p for p in operation["parameters"] if p["in"] == "formData"}
    assert set(fields) == {"key", "size", "content_type", "filename", "user_id"}
    assert all(p["required"] for name, p in fields.items() if name != "filename")
    assert all("maxLength" in p for p in fields.values() if p["type"] == "string")
    assert "application/x-www-form-urlencoded" in operation["consumes"]
