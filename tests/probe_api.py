"""A namespace that exists only in tests: it raises each kind of error and sleeps on request.

It is also how a project adds a namespace: a module with `ns`, models, resources that call services.
"""

from __future__ import annotations

import gc
import logging
import time

from flask import request
from flask_restx import Namespace, Resource, fields

from app import create_app
from app.api.envelope import accepts, fails, public, returns
from app.errors import Conflict, TooManyRequests
from app.extensions import db, redis_store
from app.models import User
from app.tasks import async_task

ns = Namespace("probe", description="Test-only operations")

echo_model = ns.model("Echo", {
    "name": fields.String(required=True, min_length=1, max_length=20),
    "age": fields.Integer(required=True, min=0, max=150),
})


@ns.route("/echo")
class Echo(Resource):
    @public
    @accepts(ns, echo_model)
    @returns(ns, echo_model)
    def post(self) -> dict:
        """Echo a validated body."""
        return ns.payload


@ns.route("/boom")
class Boom(Resource):
    @public
    @returns(ns)
    def get(self) -> None:
        """Fail with an unhandled exception carrying a secret-looking message."""
        raise RuntimeError("SELECT password_hash FROM users -- internal detail")


@ns.route("/conflict")
class ConflictProbe(Resource):
    @public
    @returns(ns)
    @fails(ns, 409)
    def get(self) -> None:
        """Raise an API error from the app."""
        raise Conflict("phone is taken", field="phone")


@ns.route("/limited")
class Limited(Resource):
    @public
    @returns(ns)
    @fails(ns, 429)
    def get(self) -> None:
        """Raise a 429 with Retry-After."""
        raise TooManyRequests("slow down", retry_after=42)


@ns.route("/slow")
class Slow(Resource):
    @public
    @returns(ns)
    def get(self) -> str:
        """Sleep ?seconds= then answer."""
        logging.getLogger("probe").info("slow request started")
        time.sleep(float(request.args.get("seconds", "1")))
        return "done"


@ns.route("/redis")
class RedisProbe(Resource):
    @public
    @returns(ns)
    @fails(ns, 503)
    def get(self) -> int:
        """Touch Redis."""
        return int(redis_store.incr(redis_store.key("probe")))


@ns.route("/database")
class DatabaseProbe(Resource):
    @public
    @returns(ns)
    @fails(ns, 503)
    def get(self) -> int:
        """Touch the database."""
        return int(db.session.query(User).count())


@async_task
def _slow_task(seconds: float, path: str, fail: bool) -> None:
    time.sleep(seconds)
    if fail:
        raise ValueError("the probe task failed on purpose")
    with open(path, "w") as done:
        done.write("done")


@ns.route("/task")
class TaskProbe(Resource):
    @public
    @returns(ns)
    def post(self) -> str:
        """Start a background task: ?seconds= then write ?path=, or raise with ?fail=1."""
        _slow_task(float(request.args.get("seconds", "0")), request.args.get("path", "/dev/null"),
                   request.args.get("fail") == "1")
        return "accepted"


@ns.route("/gc")
class GarbageCollectorProbe(Resource):
    @public
    @returns(ns)
    def get(self) -> dict:
        """How many objects the collector leaves alone (gc.freeze) and how many it tracks."""
        return {"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}


PROBE = (ns, "/probe")


def create_probe_app() -> object:
    """The app plus the probe namespace, for `tornado_server.py --app probe_api:create_probe_app`."""
    return create_app(extra_namespaces=[PROBE])
