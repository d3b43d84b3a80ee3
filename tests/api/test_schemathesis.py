"""Contract fuzzing: schemathesis over every operation of the spec, every check but one, zero failures.

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

from app.api.fields import PHONE_MAX_LENGTH

# The spec's "phone" format: numbers that exist (random digits of the right length mostly do not), padded with
# spaces (which the service ignores) to any length up to one past the spec's maxLength, so that schemathesis
# finds the boundary lengths it asks for (valid and too long) quickly instead of filtering in vain.
schemathesis.openapi.format("phone", st.builds(
    str.ljust,
    st.one_of(st.from_regex(r"\A1(3[0-9]|5[0-35-9]|8[0-9])[0-9]{8}\Z"),
              st.sampled_from(["+8613800138000", "+14155552671", "+442079460958"])),
    st.integers(0, PHONE_MAX_LENGTH + 1),
))

# Qiniu keys (no network is used: tokens are made offline, callbacks are refused for their signature), so that
# no documented 501 stands in front of the operations behind it.
QINIU = {"access_key": "ak", "secret_key": "sk", "bucket_name": "b", "domain": "https://cdn.example.com"}
# S3 settings for the same reason: upload URLs are signed offline, and /files/s3/complete refuses a key it never
# issued before it would reach the store (on a port where nothing listens).
S3 = {"endpoint_url": "http://127.0.0.1:9", "bucket": "fuzz-bucket", "access_key": "ak", "secret_key": "sk"}


def fuzz_config() -> SchemathesisConfig:
    """Every check but positive_data_acceptance; no config file is read.

    positive_data_acceptance is off: schema-valid input is refused by design in places no schema can say (an
    SMS code, email code or password only the server knows; two alternative sets of fields, which Swagger 2.0
    cannot express without oneOf; which file content is of an allowed type). Unknown query parameters are
    ignored by design, so schemathesis does not send them as invalid input; unknown body properties are refused
    (additionalProperties: false), and it does send those.
    """
    return SchemathesisConfig.from_dict({
        "generation": {"allow-extra-parameters": False},
        "checks": {"positive_data_acceptance": {"enabled": False}},
    })


@pytest.fixture
def api_schema(make_app):
    """The spec of an app on this test's database and Redis; a fresh admin's token for each operation.

    A token per operation, so that a fuzzed logout or delete of one cannot starve the next; schemathesis
    leaves it out of the cases that test a missing token, and fetches a new one if a session was ended.
    """
    from app.services import sessions, users

    app = make_app({"qiniu": QINIU, "s3": S3})
    schema = schemathesis.openapi.from_wsgi("/api/swagger.json", app, config=fuzz_config())
    admins = itertools.count()

    @schema.auth(cache_by_key=lambda case, ctx: ctx.operation.label)
    class FreshAdmin:
        def get(self, case, ctx):
            with app.app_context():
                admin = users.create_user(f"+861390000{next(admins):04d}", "violet harbour kestrel 9", "admin",
                                          role="admin")
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
    """The spec loads whole and the config deselects nothing."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    in_spec = [(path, method) for path, item in api_schema.raw_schema["paths"].items() for method in item
               if method in ("get", "put", "post", "delete", "patch")]
    assert len(operations) == len(in_spec) > 0
