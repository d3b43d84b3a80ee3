"""The API: one Blueprint at /api, one Api with the token scheme, one Namespace per module."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cached_property
from typing import Any

from flask import Blueprint, Flask, Response
from flask_restx import Api, Namespace, Resource
from flask_restx.swagger import Swagger

from app.api.auth import ns as auth_ns
from app.api.common import ns as common_ns
from app.api.envelope import ERROR_DESCRIPTIONS, error_model
from app.api.files import ns as files_ns
from app.api.health import ns as health_ns
from app.api.mfa import ns as mfa_ns
from app.api.openapi31 import to_openapi31
from app.api.sessions import ns as sessions_ns
from app.api.users import ns as users_ns
from app.api.validation import AsciiIntegerConverter
from app.config import settings_of
from app.errors import error_response
from app.version import __version__

# Add a namespace: write app/api/<name>.py with `ns = Namespace(...)`, then list it here.
NAMESPACES: tuple[tuple[Namespace, str], ...] = (
    (health_ns, "/health"),
    (common_ns, "/common"),
    (auth_ns, "/auth"),
    (sessions_ns, "/auth"),
    (mfa_ns, "/auth/mfa"),
    (users_ns, "/users"),
    (files_ns, "/files"),
)

AUTHORIZATIONS = {
    "token": {
        "type": "apiKey",
        "in": "header",
        "name": "token",
        "description": "The access token from POST /api/auth/login (Authorization: Bearer <token> works too).",
    }
}
# Schemes that only the OpenAPI 3.1 spec can name (Swagger UI's Authorize keeps the one field): name → (the scheme
# of AUTHORIZATIONS it is another form of, its definition).
OPENAPI31_SCHEMES = {
    "bearer": ("token", {
        "type": "http",
        "scheme": "bearer",
        "description": "The access token from POST /api/auth/login as Authorization: Bearer <token>.",
    }),
}


class _Swagger(Swagger):
    """Documents 500 on every operation: any of them can meet a bug; 413 on every one: the server refuses a body
    over server.max_body_size before any route is known (app.server.bodies); and 400 on every one but the probes:
    in production a request for another host than app.public_url's is 400 (app.urls)."""

    _probes = False

    def serialize_resource(self, ns: Namespace, resource: Any, url: str, route_doc: Any = None, **kwargs: Any) -> Any:
        self._probes = ns is health_ns
        return super().serialize_resource(ns, resource, url, route_doc, **kwargs)

    def responses_for(self, doc: dict, method: str) -> dict:
        responses: dict[str, Any] = super().responses_for(doc, method)
        if not self._probes:
            responses.setdefault("400", {"description": ERROR_DESCRIPTIONS[400],
                                         "schema": self.serialize_schema(error_model)})
        responses.setdefault("413", {"description": ERROR_DESCRIPTIONS[413],
                                     "schema": self.serialize_schema(error_model)})
        responses.setdefault("500", {
            "description": ERROR_DESCRIPTIONS[500],
            "schema": self.serialize_schema(error_model),
        })
        return responses


class EnvelopeApi(Api):
    """An Api whose every error, the framework's included, is the contract's error envelope."""

    def handle_error(self, e: Exception) -> Any:
        return error_response(e)

    @cached_property
    def __schema__(self) -> dict:
        return _Swagger(self).as_dict()

    @cached_property
    def __openapi31__(self) -> dict:
        """The OpenAPI 3.1 spec: the Swagger 2.0 one converted, once per app."""
        return to_openapi31(self.__schema__, OPENAPI31_SCHEMES)

    @cached_property
    def spec_texts(self) -> dict[str, bytes]:
        """Both specs as the bytes each request gets: serialised once, not per request (235 KB took 9 ms)."""
        return {name: json.dumps(spec, ensure_ascii=False, separators=(",", ":")).encode()
                for name, spec in (("swagger", self.__schema__), ("openapi", self.__openapi31__))}

    def _register_specs(self, app_or_blueprint: Any) -> None:
        """swagger.json (flask-restx's endpoint name, which Swagger UI asks for) and openapi.json beside it, never an
        operation of either spec."""
        if self._add_specs:
            for path, endpoint, name in (("/swagger.json", "specs", "swagger"),
                                         ("/openapi.json", "openapi", "openapi")):
                self._register_view(app_or_blueprint, SpecView, self.default_namespace, path, endpoint=endpoint,
                                    resource_class_args=(name,))
                self.endpoints.add(endpoint)


class SpecView(Resource):
    """GET /api/swagger.json or /api/openapi.json: the spec's bytes, made once per process."""

    def __init__(self, api: EnvelopeApi, name: str) -> None:
        super().__init__(api)
        self.name = name

    def get(self) -> Response:
        return Response(self.api.spec_texts[self.name], mimetype="application/json")


def create_api(app: Flask, extra_namespaces: Iterable[tuple[Namespace, str]] = ()) -> EnvelopeApi:
    """Build the blueprint and the Api, add every namespace, and register them on ``app``."""
    settings = settings_of(app)
    blueprint = Blueprint("api", __name__, url_prefix="/api")
    api = EnvelopeApi(
        version=__version__,
        title=settings.api.title,
        description=settings.api.description,
        doc="/" if settings.api.docs else False,
        authorizations=AUTHORIZATIONS,
        security="token",
        catch_all_404s=True,
    )
    # add_specs only takes effect through init_app (flask-restx ignores it in the constructor).
    api.init_app(blueprint, add_specs=settings.api.docs)
    app.url_map.converters["int"] = AsciiIntegerConverter  # before the blueprint's rules are bound
    api.models[error_model.name] = error_model
    for namespace, path in (*NAMESPACES, *extra_namespaces):
        api.add_namespace(namespace, path=path)
        # A namespace lists every Api it joined, to pass on resources added later; as ours are module-level, that
        # list would keep each app made in this process alive (every test's), so it keeps only the newest.
        namespace.apis[:] = [api]
    app.register_blueprint(blueprint)
    app.extensions["restx_api"] = api
    return api

