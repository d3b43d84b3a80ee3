"""The security headers of every answer, set here and nowhere else.

- ``X-Content-Type-Options: nosniff`` everywhere: a browser never guesses a type other than the one we send (a
  download that looks like HTML stays a download).
- ``Cache-Control: no-store`` on every answer but Swagger UI's static assets. Many answers carry tokens, tickets,
  codes or personal data, and the rest are cheap to make again, so no cache (browser or proxy) keeps any of
  them; one rule leaves no answer forgotten. Downloads included: they are private and sent behind a token, and
  ``If-None-Match`` (the ETag is the sha256 the metadata shows) and ``Range`` still work without a cache.
- ``Content-Security-Policy``: nothing may frame any page (``frame-ancestors 'none'``, against clickjacking).
  The Swagger UI page may load only its own assets and run only its inline script, by hash; every other answer
  loads nothing (``default-src 'none'``), should a browser ever render one.
"""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Flask, Response, request

API_POLICY = "default-src 'none'; frame-ancestors 'none'"
DOCS_ENDPOINT = "api.doc"  # flask-restx's Swagger UI page at /api/
DOCS_ASSETS_ENDPOINT = "restx_doc.static"  # its scripts, styles and icons under /swaggerui/
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def docs_policy(page: bytes) -> str:
    """The Swagger UI page's policy: its own assets, and the inline scripts of this very page by hash."""
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                     for script in _INLINE_SCRIPT.findall(page))
    return ("default-src 'self'; script-src 'self'" + hashes + "; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def add_security_headers(response: Response) -> Response:
    endpoint = request.endpoint
    response.headers["X-Content-Type-Options"] = "nosniff"
    if endpoint != DOCS_ASSETS_ENDPOINT:
        response.headers["Cache-Control"] = "no-store"
    if endpoint == DOCS_ENDPOINT and response.status_code == 200 and not response.is_streamed:
        response.headers["Content-Security-Policy"] = docs_policy(response.get_data())
    else:
        response.headers["Content-Security-Policy"] = API_POLICY
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
