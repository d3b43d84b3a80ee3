"""Contract fuzzing: schemathesis over every operation of the spec, every check, zero failures."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings


def fuzz(operation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        case.call_and_validate()

    run()


def test_every_operation_meets_its_spec(app):
    schema = schemathesis.openapi.from_wsgi("/api/swagger.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the spec has no operations"
    failures = {}
    for operation in operations:
        try:
            fuzz(operation)
        except BaseException as exc:  # schemathesis raises FailureGroup, a BaseExceptionGroup
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
