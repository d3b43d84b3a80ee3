"""Health checks for load balancers and supervisors."""

from flask_restx import Namespace, Resource, fields

from app.api.envelope import ERROR_FIELDS, public, returns
from app.services.health import check_readiness

ns = Namespace("health", description="Liveness and readiness probes")

readiness = ns.model("Readiness", {
    "database": fields.String(required=True, enum=["ok", "down"]),
    "redis": fields.String(required=True, enum=["ok", "down"]),
    "jobs": fields.String(required=True, enum=["ok", "down", "thread"],
                          description="thread: in-process background jobs; ok or down: whether a Celery worker "
                                      "answered a ping (down does not make the process unready)"),
    "version": fields.String(required=True, example="1.0.0"),
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
