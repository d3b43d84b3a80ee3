"""Health checks for load balancers and supervisors."""

from flask_restx import Namespace, Resource, fields

from app.api.envelope import ERROR_FIELDS, NullableString, public, returns
from app.services.health import check_readiness

ns = Namespace("health", description="Liveness and readiness probes")

build = ns.model("Build", {
    "commit": NullableString(required=True, example="3f2c1e0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e",
                             description="the git commit the running release was built from; null outside a "
                                         "deployed build"),
    "dirty": fields.Boolean(required=True, example=False,
                            description="built with uncommitted changes (fab build --dirty)"),
    "built_at": NullableString(required=True, example="2026-11-29T10:30:00Z"),
    "release": NullableString(required=True, example="20261129T103012.123456",
                              description="the release directory this process was started from"),
})
readiness = ns.model("Readiness", {
    "database": fields.String(required=True, enum=["ok", "down"]),
    "redis": fields.String(required=True, enum=["ok", "down"]),
    "jobs": fields.String(required=True, enum=["ok", "down", "thread"],
                          description="thread: in-process background jobs; ok or down: whether a Celery worker "
                                      "answered a ping (down does not make the process unready)"),
    "version": fields.String(required=True, example="1.0.0"),
    "build": fields.Nested(build, required=True, description="what this process runs (fab releases shows it)"),
})
unready = ns.model("Unready", {**ERROR_FIELDS, "data": fields.Nested(readiness, required=True)})
liveness = ns.model("Liveness", {"alive": fields.Boolean(required=True, example=True)})


@ns.route("")
class Readiness(Resource):
    @public
    @returns(ns, readiness, description="The database and Redis answer")
    @ns.response(503, "SERVICE_UNAVAILABLE: data names what is down", unready)
    def get(self) -> dict:
        """Readiness: the database and Redis answer."""
        return check_readiness()


@ns.route("/live")
class Liveness(Resource):
    @public
    @returns(ns, liveness, description="The process answers")
    def get(self) -> dict:
        """Liveness: the process answers; touches no dependency."""
        return {"alive": True}
