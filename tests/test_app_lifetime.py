"""An app nobody holds any more is freed. The suite makes an app per test in one process: apps kept alive made its
full garbage collections grow to 2 s by the end, long enough to fail a test that times an answer."""

from __future__ import annotations

import gc
import weakref

from app import create_app
from app.extensions import db, redis_store


def used_app(settings: dict) -> weakref.ref:
    """An app made, served a few requests and disposed as the fixtures do; only a weak reference is returned."""
    app = create_app(settings)
    with app.app_context():
        db.create_all()
    client = app.test_client()
    assert client.get("/api/health/live").status_code == 200
    assert client.get("/api/swagger.json").status_code == 200
    assert client.post("/api/auth/login", json={"account": "nobody", "password": "x"}).status_code == 401
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
        redis_store.close()
    return weakref.ref(app)


def test_an_app_is_freed_once_a_newer_one_is_made(test_settings):
    first = used_app(test_settings)
    second = used_app(test_settings)
    gc.collect()
    assert first() is None, [type(r).__name__ for r in gc.get_referrers(first())]
    assert second() is not None  # flask-restx's namespaces keep the newest Api (for resources added later)
