"""`python manage.py new-resource`, in copies of the project (never this tree): a resource with four fields is
written, migrated on SQLite, PostgreSQL and MariaDB, passes its own tests, the spec's and lint, and is in Swagger UI;
a refused name, field or project writes nothing. The copies are removed at the end.

These run on the shared servers whatever TEST_DATABASE_URL says (each in a schema or database of its own).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, inspect

from tests.fixtures.databases import fresh_database
from tests.fixtures.swagger_ui import expand_all
from tests.support import PROJECT_DIR, commit, copy_project, free_port, run_manage, wait_until

pytestmark = pytest.mark.own_services

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
FIELDS = "title:str,body:text,done:bool,due:date"
WRITTEN = {"app/models/task.py", "app/services/tasks.py", "app/api/tasks.py", "tests/api/test_tasks.py"}
CHANGED = {"app/models/__init__.py", "app/api/__init__.py"}
BIN = Path(sys.executable).parent
SPEC = """
import json
from app import create_app
client = create_app({"database": {"url": "sqlite://"}}).test_client()
print(json.dumps({"ui": client.get("/api/").status_code, "spec": client.get("/api/swagger.json").get_json(),
                  "openapi": list(client.get("/api/openapi.json").get_json()["paths"])}))
"""


def project_copy(parent: Path) -> Path:
    """The project as a build packs it, plus its tests and tool settings, committed in a git repository."""
    root = copy_project(parent / "project")
    shutil.copytree(PROJECT_DIR / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", ".gitignore", "babel.cfg"):
        shutil.copy2(PROJECT_DIR / name, root / name)
    commit(root, "the tests")
    return root


def changes(root: Path) -> set[str]:
    """The paths git sees added or changed in ``root`` (new files one by one)."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    return {line[3:] for line in status.splitlines()}


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the project in which `new-resource task --fields FIELDS` ran; removed afterwards."""
    parent = tmp_path_factory.mktemp("new_resource")
    root = project_copy(parent)
    database = root / "instance" / "untouched.db"
    result = run_manage("new-resource", "task", "--fields", FIELDS, env={"DATABASE_URL": f"sqlite:///{database}"},
                        cwd=root)
    assert result.returncode == 0, result.stderr
    assert not database.exists()  # the migration was made against a scratch database, not the app's
    yield root
    shutil.rmtree(parent)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    parent = tmp_path_factory.mktemp("refused")
    yield project_copy(parent)
    shutil.rmtree(parent)


def test_it_writes_the_model_migration_service_namespace_and_tests_and_registers_them(generated: Path) -> None:
    found = changes(generated)
    migrations = {path for path in found if path.startswith("migrations/versions/")}
    assert found - migrations == WRITTEN | CHANGED
    assert [Path(path).name.split("_", 1)[1] for path in migrations] == ["create_tasks.py"]
    assert "(tasks_ns, \"/tasks\")" in (generated / "app/api/__init__.py").read_text()
    for path in [*WRITTEN, *migrations]:
        text = (generated / path).read_text()
        assert not any(marker in text.lower() for marker in ("generated", "todo", "please adjust")), path


def test_it_migrates_up_down_and_up_on_sqlite_postgresql_and_mariadb(generated: Path, tmp_path: Path) -> None:
    with fresh_database(SERVERS["postgresql"], tmp_path) as postgresql, \
            fresh_database(SERVERS["mariadb"], tmp_path) as mariadb:
        for url in (f"sqlite:///{tmp_path / 'app.db'}", postgresql, mariadb):
            for step in (["upgrade"], ["downgrade"], ["upgrade"]):  # downgrade: one step back
                result = run_manage("db", *step, env={"DATABASE_URL": url}, cwd=generated)
                assert result.returncode == 0, f"{url}: db {' '.join(step)}\n{result.stderr}"
                assert ("tasks" in tables(url)) == (step == ["upgrade"]), f"{url}: db {' '.join(step)}"


def test_its_tests_pass_on_postgresql_and_the_spec_and_catalogue_tests_on_sqlite(generated: Path, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("APP_", "TEST_"))}
    env["REQUIRE_SERVICES"] = "1"
    pytest_args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp"]
    for database, tests in ((SERVERS["postgresql"], ["tests/api/test_tasks.py"]),
                            ("", ["tests/api/test_spec.py", "tests/api/test_openapi31.py",
                                  "tests/api/test_documented_statuses.py", "tests/api/test_request_bodies.py",
                                  "tests/test_translations.py"])):  # every message it answers has both languages
        result = run(generated, *pytest_args, str(tmp_path / "pytest"), *tests,
                     env={**env, "TEST_DATABASE_URL": database})
        summary = result.stdout.strip().splitlines()[-1]
        assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary


def test_lint_passes(generated: Path) -> None:
    run(generated, str(BIN / "ruff"), "check", ".")
    run(generated, str(BIN / "mypy"))


def test_swagger_ui_and_both_specs_show_the_namespace(generated: Path) -> None:
    answer = json.loads(run(generated, sys.executable, "-c", SPEC).stdout.splitlines()[-1])
    assert answer["ui"] == 200
    spec = answer["spec"]
    assert {tag["name"] for tag in spec["tags"]} >= {"tasks"}
    assert set(spec["paths"]["/tasks/"]) == {"get", "post"}
    assert set(spec["paths"]["/tasks/{task_id}"]) == {"parameters", "get", "patch", "delete"}
    assert set(spec["definitions"]["NewTask"]["properties"]) == {"title", "body", "done", "due"}
    assert {"/tasks/", "/tasks/{task_id}"} <= set(answer["openapi"])  # the OpenAPI 3.1 spec too


@pytest.mark.browser
def test_swagger_ui_in_chromium_shows_its_operations(generated: Path, browser: Any, tmp_path: Path) -> None:
    """The copy's own server (it migrates its SQLite database at start), its /api/ page in headless Chromium."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("APP_", "TEST_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'ui.db'}", "REDIS_URL": "memory://"})
    server = subprocess.Popen([sys.executable, "tornado_server.py", "--port", str(port)], cwd=generated, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: live(port), timeout=30)
        page = browser.new_page()
        page.set_default_timeout(5000)
        page.goto(f"http://127.0.0.1:{port}/api/")
        page.wait_for_selector(".swagger-ui .info .title")
        expand_all(page)
        shown = {text.strip() for text in page.locator(".opblock-summary-path").all_inner_texts()}
        assert {"/tasks/", "/tasks/{task_id}"} <= shown, shown
        page.close()
    finally:
        server.terminate()
        server.wait(20)


def live(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/health/live", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_the_same_name_again_is_refused(generated: Path) -> None:
    before = changes(generated)
    result = run_manage("new-resource", "task", cwd=generated, env={})
    assert result.returncode == 1 and "taken" in result.stderr
    assert changes(generated) == before


@pytest.mark.parametrize(("args", "says"), [  # the other refusals: tests/test_scaffold.py, in memory
    (["users"], "'users' is taken"),
    (["Bad-Name"], "not a lowercase snake_case"),
    (["class"], "Python keyword"),
    (["task", "--fields", "owner_id:int"], "reserved"),
])
def test_a_refused_name_or_field_writes_nothing(pristine: Path, args: list[str], says: str) -> None:
    result = run_manage("new-resource", *args, cwd=pristine, env={})
    assert result.returncode != 0 and says in result.stderr, result.stderr
    assert changes(pristine) == set()


def test_a_model_changed_without_its_migration_is_refused_and_what_was_written_is_taken_back(pristine: Path) -> None:
    model = pristine / "app/models/file.py"
    original = model.read_text()
    model.write_text(original + "    note: Mapped[str] = mapped_column(String(16))\n")
    try:
        result = run_manage("new-resource", "task", cwd=pristine, env={})
        assert result.returncode == 1 and "differ beyond the new table" in result.stderr, result.stderr
        assert changes(pristine) == {"app/models/file.py"}
    finally:
        model.write_text(original)
