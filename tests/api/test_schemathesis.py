"""Contract fuzzing: schemathesis over every operation of the Swagger 2.0 spec, every check but one, zero failures.

The schema is loaded lazily from a fixture (``schemathesis.pytest.from_fixture``), so it is read from an
app on this test's own database and Redis namespace; each operation is reported as a subtest. The setup (the
checks, the phone format, a fresh admin per operation) is tests/fixtures/fuzzing.py's, shared with
test_schemathesis_openapi31.py.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings


@pytest.fixture
def api_schema(fuzzed_spec):
    return fuzzed_spec("/api/swagger.json")


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
