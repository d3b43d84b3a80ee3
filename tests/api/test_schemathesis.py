"""Contract fuzzing: schemathesis over every operation of the spec, every check, zero failures.

The schema is loaded lazily from a fixture (``schemathesis.pytest.from_fixture``), so it is read from an
app on this test's own database and Redis namespace; each operation is reported as a subtest.
"""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

# The spec's "phone" format: numbers that exist (random digits of the right length mostly do not).
schemathesis.openapi.format("phone", st.one_of(
    st.from_regex(r"\A1(3[0-9]|5[0-35-9]|8[0-9])[0-9]{8}\Z"),
    st.sampled_from(["+8613800138000", "+14155552671", "+442079460958"]),
))

# Where schema-valid input is still refused by design, and with which status: an SMS code, email code or
# password only the server knows is 400 INVALID_FIELD (or 401 for credentials); two alternative sets of
# fields cannot be said in Swagger 2.0 (no oneOf); no schema can say which file content is of an allowed
# type (415). positive_data_acceptance still runs on these, with these statuses added to what it accepts.
REFUSED_BY_DESIGN = {
    "POST /common/sms/verify": ["400"],
    "POST /auth/register": ["400"],
    "POST /auth/login": ["400"],
    "POST /auth/password/reset": ["400"],
    "PUT /auth/password": ["400"],
    "POST /files/": ["400", "415"],
    "GET /files/upload-token": ["400", "415"],
}
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
# Qiniu keys (no network is used: tokens are made offline, callbacks are refused for their signature).
QINIU = {"access_key": "ak", "secret_key": "sk", "bucket_name": "b", "domain": "https://cdn.example.com"}


def fuzz_config() -> SchemathesisConfig:
    """Every check; no config file is read.

    Unknown query parameters and body fields are ignored by design (not refused), so schemathesis does not
    send them as "invalid" input. No NUL characters in strings: PostgreSQL cannot store them in text, so there
    such a value answers 400 (tests/api/test_users.py checks it is never a 500), which this check would count
    as valid input refused. Each operation that refuses schema-valid input by design may answer the statuses
    above to it.
    """
    return SchemathesisConfig.from_dict({
        "generation": {"allow-extra-parameters": False, "allow-x00": False},
        "operations": [
            {"include-name": label,
             "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, *statuses]}}}
            for label, statuses in REFUSED_BY_DESIGN.items()
        ],
    })


@pytest.fixture
def api_schema(make_app):
    """The spec of an app on this test's database and Redis; a fresh admin's token for each operation.

    A token per operation, so that a fuzzed logout or delete of one cannot starve the next; schemathesis
    leaves it out of the cases that test a missing token, and fetches a new one if a session was ended.
    """
    from app.services import sessions, users

    app = make_app({"qiniu": QINIU})
    schema = schemathesis.openapi.from_wsgi("/api/swagger.json", app, config=fuzz_config())
    admins = itertools.count()

    @schema.auth(cache_by_key=lambda case, ctx: ctx.operation.label)
    class FreshAdmin:
        def get(self, case, ctx):
            with app.app_context():
                admin = users.create_user(f"+861390000{next(admins):04d}", "admin-password", "admin", role="admin")
                return sessions.open_session(admin.id, "127.0.0.1", "schemathesis").token

        def set(self, case, data, ctx):
            case.headers = {**(case.headers or {}), "token": data}

    return schema


@pytest.fixture(autouse=True)
def _legacy_node_id(request):
    """schemathesis 4.32's lazy schema reads ``item._nodeid``, which pytest 9.2 no longer has."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_operation_meets_its_spec(case):
    case.call_and_validate()


def test_every_operation_is_fuzzed(api_schema):
    """The spec loads whole, the config deselects nothing, and every exception above names a real operation."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    in_spec = [(path, method) for path, item in api_schema.raw_schema["paths"].items() for method in item
               if method in ("get", "put", "post", "delete", "patch")]
    assert len(operations) == len(in_spec) > 0
    assert set(REFUSED_BY_DESIGN) <= {operation.label for operation in operations}
