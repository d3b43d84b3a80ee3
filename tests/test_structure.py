"""The shape of the code: every app module imports on its own, no import cycle, no hidden imports, small files."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
APP_DIR = PROJECT_DIR / "app"
MAX_LINES = 300
# Words in a comment that are a tool's pragma, not a reason.
PRAGMA = re.compile(r"#\s*(noqa(:\s*[A-Z0-9, ]+)?|type:\s*ignore(\[[\w\-, ]+\])?|pragma:[^#]*)", re.IGNORECASE)


def app_modules() -> dict[str, Path]:
    """Dotted name → file of every module under app/."""
    modules = {}
    for path in sorted(APP_DIR.rglob("*.py")):
        parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def our_scripts() -> list[Path]:
    """The project's own Python files outside app/ and tests/: the top-level scripts and deploy/."""
    return sorted([*PROJECT_DIR.glob("*.py"), *(PROJECT_DIR / "deploy").rglob("*.py")])


def _type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): its body never runs. ``if not TYPE_CHECKING`` does."""
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The app modules that ``name`` imports, at module level or inside functions (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    for node in ast.walk(tree):
        if _type_checking_block(node):
            node.body = []  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    # Importing app.x.y runs app/x/__init__.py first: an edge too, unless that package is one of this module's
    # own (its __init__ has run before this module started). What is named explicitly is always an edge.
    edges = {target for target in found if target in known}
    for target in found:
        parts = target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in known and not name.startswith(parent + "."):
                edges.add(parent)
    return edges - {name}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_the_app_package_has_no_import_cycle() -> None:
    modules = app_modules()
    graph = {name: imported_modules(path, name, set(modules)) for name, path in modules.items()}
    assert find_cycles(graph) == []


def _says_why(line: str) -> bool:
    """A comment on ``line`` with words in it besides tool pragmas (``# noqa: F401`` alone is no reason)."""
    _, hash_, comment = line.partition("#")
    return bool(hash_) and bool(PRAGMA.sub("", "#" + comment).strip(" #"))


def test_an_import_inside_a_function_says_why() -> None:
    unexplained = set()
    for path in [*app_modules().values(), *our_scripts()]:
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    here, above = lines[inner.lineno - 1], lines[inner.lineno - 2]
                    if not _says_why(here) and not (above.strip().startswith("#") and _says_why(above)):
                        unexplained.add(f"{path.relative_to(PROJECT_DIR)}:{inner.lineno}: {here.strip()}")
    assert sorted(unexplained) == []


def test_no_module_is_over_300_lines() -> None:
    paths = [*app_modules().values(), *our_scripts()]
    long = {str(p.relative_to(PROJECT_DIR)): n for p in paths if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def third_party_imports() -> list[str]:
    """The packages outside app/ that app's modules import at module level (what every child would load)."""
    names = set()
    for path in app_modules().values():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module)
    return sorted(name for name in names if name.partition(".")[0] not in ("app", "__future__"))


CHILD = """
import importlib, os, sys
separator = sys.argv.index("--")
for name in sys.argv[1:separator]:  # loaded once here, shared by every child: only app/ is imported afresh
    importlib.import_module(name)
failed = []
for name in sys.argv[separator + 1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print("failed:", *failed)
"""


def test_every_app_module_imports_on_its_own() -> None:
    """Each module imported first, in a process where no other module of app/ was imported yet."""
    argv = [*third_party_imports(), "--", *app_modules()]
    result = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=PROJECT_DIR, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1:] == ["failed:"], result.stderr
