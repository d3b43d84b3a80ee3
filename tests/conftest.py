"""Fixtures: an app and client per test on a fresh database and a fresh Redis namespace, and live servers.

Which services: ``TEST_DATABASE_URL`` (a PostgreSQL or MySQL/MariaDB URL; default SQLite in a temporary
directory) and ``REDIS_URL`` (default ``memory://``). Each test gets its own PostgreSQL schema, MySQL
database or SQLite file, and its own Redis key prefix, dropped afterwards. With ``REQUIRE_SERVICES=1``
a configured service that cannot be reached fails the test instead of skipping it.

The fixtures live in tests/fixtures/, one concern per module; helpers that tests import are in
tests/support.py and beside their fixtures (``from tests.fixtures.accounts import login``), never in this file.
"""

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.redis_namespaces",
    "tests.fixtures.sentinel",
    "tests.fixtures.apps",
    "tests.fixtures.live_servers",
    "tests.fixtures.accounts",
    "tests.fixtures.mail",
    "tests.fixtures.swagger_ui",
    "tests.fixtures.relays",
    "tests.fixtures.celery_workers",
    "tests.fixtures.s3_servers",
    "tests.fixtures.fuzzing",
]
