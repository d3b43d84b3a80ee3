"""The test suite's own layout: fixtures in tests/fixtures/ loaded as plugins, helpers imported from tests.*."""

from __future__ import annotations

import ast

from tests.support import TESTS_DIR

FIXTURES_DIR = TESTS_DIR / "fixtures"
# Names a test module could import a helper by that would make a second copy of tests.support or tests.fixtures.*.
BARE_NAMES = {"conftest", "support", "fixtures"}


def imported_modules(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_test_module_imports_conftest_or_a_helper_by_its_bare_name():
    offenders = []
    for path in sorted(TESTS_DIR.rglob("*.py")):
        for name in imported_modules(ast.parse(path.read_text(), str(path))):
            if name.split(".")[0] in BARE_NAMES:
                offenders.append(f"{path.relative_to(TESTS_DIR)}: {name}")
    assert offenders == [], "import helpers as tests.support / tests.fixtures.<module>"


def test_conftest_only_loads_the_fixture_modules():
    tree = ast.parse((TESTS_DIR / "conftest.py").read_text())
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    assert [type(node) for node in body] == [ast.Assign]
    assert [target.id for target in body[0].targets] == ["pytest_plugins"]
    modules = {f"tests.fixtures.{path.stem}" for path in FIXTURES_DIR.glob("*.py")}
    assert sorted(ast.literal_eval(body[0].value)) == sorted(modules)


def test_each_fixture_module_is_short_and_says_in_one_line_what_it_holds():
    for path in sorted(FIXTURES_DIR.glob("*.py")):
        text = path.read_text()
        docstring = ast.get_docstring(ast.parse(text), clean=False)
        assert docstring and "\n" not in docstring, path.name
        assert len(text.splitlines()) < 300, path.name


def test_account_tests_run_on_this_tests_redis_namespace_not_on_a_real_redis(accounts_settings, redis_namespace):
    """memory:// unless REDIS_URL is set, so they run (not skip) on a machine without Redis."""
    url, prefix = redis_namespace
    assert accounts_settings["redis"] == {"url": url, "prefix": prefix}
