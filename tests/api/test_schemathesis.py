"""Contract fuzzing: schemathesis over every operation of the spec, every check, zero failures."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

# The spec's "phone" format: numbers that exist (random digits of the right length mostly do not).
schemathesis.openapi.format("phone", st.one_of(
    st.from_regex(r"\A1(3[0-9]|5[0-35-9]|8[0-9])[0-9]{8}\Z"),
    st.sampled_from(["+8613800138000", "+14155552671", "+442079460958"]),
))

# Operations where schema-valid input is still refused by design: they need an SMS code or password only
# the server knows, one of two alternative sets of fields (Swagger 2.0 has no oneOf to say so), or a file
# whose content is of an allowed type (which no schema can describe).
SERVER_KNOWS_THE_ANSWER = {
    "POST /common/sms/verify", "POST /auth/register", "POST /auth/login", "POST /auth/password/reset",
    "PUT /auth/password", "POST /files/", "GET /files/upload-token",
}
# Qiniu keys (no network is used: tokens are made offline, callbacks are refused for their signature).
QINIU = {"access_key": "ak", "secret_key": "sk", "bucket_name": "b", "domain": "https://cdn.example.com"}


def fuzz(operation, headers=None) -> None:
    excluded = [positive_data_acceptance] if operation.label in SERVER_KNOWS_THE_ANSWER else []

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    run()


def admin_token(app, n: int) -> str:
    """A fresh admin and session per operation, so a fuzzed logout or delete cannot starve the next one."""
    from app.services import sessions, users

    with app.app_context():
        admin = users.create_user(f"+861390000{n:04d}", "admin-password", "admin", role="admin")
        return sessions.open_session(admin.id, "127.0.0.1", "schemathesis").token


def test_every_operation_meets_its_spec(make_app):
    app = make_app({"qiniu": QINIU})
    schema = schemathesis.openapi.from_wsgi("/api/swagger.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the spec has no operations"
    failures = {}
    for n, operation in enumerate(operations):
        try:
            fuzz(operation, headers={"token": admin_token(app, n)})
        except BaseException as exc:  # schemathesis raises FailureGroup, a BaseExceptionGroup
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
