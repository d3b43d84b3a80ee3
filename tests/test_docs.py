"""README.md and docs/*.md: every shell block is run here on a fresh clone, or names the test that runs it.

A marker on the line before a fenced shell block (sh, bash, console, shell) says how it is checked:

    <!-- run -->                           run with bash in a fresh clone, in document order (README first)
    <!-- run after "TEXT" in FILE -->      the same, once FILE (in the clone) contains TEXT, as a reader would wait
    <!-- run: background -->               the last line is a server: started in the background on a free port
                                           (`--port N` replaced, or SERVER_ARGS for make); lines before it run first
    <!-- tested-by: FILE [FILE ...] -->    cannot run here (real hosts, root): the named files exist and mention
                                           each command's program, sub-commands and long options

In run blocks `localhost:5000` means the first background server. A block with no marker fails the suite.

docs/security.md's OWASP ASVS tables are checked too: every level 1 and 2 requirement of V6 and V7 has its row and
level, every test and setting a row names exists, and its Ways in lists every operation that lets someone in.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pytest
import requests

from tests.support import PROJECT_DIR, free_port, service_missing, wait_until

README = PROJECT_DIR / "README.md"
PAGES = [README, *sorted((PROJECT_DIR / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "console", "shell"}
MARKER = re.compile(r"^<!--\s*(run|tested-by)(.*?)-->$")
AFTER = re.compile(r'^after "(?P<text>[^"]+)" in (?P<file>\S+)$')
CLONE_LINE = "git clone <repository-url> flask-restx-starter && cd flask-restx-starter"
README_LIMIT = 12 * 1024
QUICK_START_LINES = 40
# The environment a reader's shell would not have: this suite's services and settings.
SCRUBBED = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "REQUIRE_SERVICES", "VIRTUAL_ENV", "PYTHONPATH",
            "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "SERVER_ARGS", "PYTEST_ARGS", "BENCH_ARGS"}


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str  # "run", "tested-by" or "" (none)
    argument: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(PROJECT_DIR)}:{self.line}"


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the marker comment on the line before it (if any)."""
    lines = page.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = lines[index].strip()
        if not opening.startswith("```"):
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        previous = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        found = MARKER.match(previous)
        blocks.append(Block(page, index + 1, opening[3:].strip(), dedent("\n".join(lines[index + 1:end]) + "\n"),
                            found.group(1) if found else "", found.group(2).strip(" :") if found else ""))
        index = end + 1
    return blocks


def shell_blocks() -> list[Block]:
    return [block for page in PAGES for block in fenced_blocks(page) if block.lang in SHELL]


def commands(text: str) -> list[list[str]]:
    """The commands of a shell block, as words: continuation lines joined, comments and `&&` chains split."""
    joined = text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", "||", ";", "|"):
                if current:
                    found.append(current)
                current = []
            else:
                current.append(word)
    return found


def required_words(command: list[str]) -> list[str]:
    """What a test that runs ``command`` must mention: the program, its sub-commands and long options,
    and the names of the environment variables set on the line (option values and paths are free)."""
    words, rest = [], list(command)
    while rest and re.match(r"^[A-Z_][A-Z0-9_]*=", rest[0]):
        words.append(rest.pop(0).split("=", 1)[0])
    if rest and Path(rest[0]).name.startswith("python"):
        rest.pop(0)
    if not rest:
        return words
    words.append(Path(rest.pop(0)).name)
    skip_value = False
    for word in rest:
        if word.startswith("-"):
            if word.startswith("--"):
                words.append(word.split("=", 1)[0])
            skip_value = "=" not in word
            continue
        if skip_value:
            skip_value = False
            continue
        if "/" in word:
            word = Path(word).name
        if re.fullmatch(r"[\w.:*-]+", word):
            words.append(word)
    return words


# --- what the pages promise ----------------------------------------------------------------------


def test_the_readme_is_at_most_12_kib() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move depth to docs/ (limit {README_LIMIT})"


def test_the_quick_start_and_its_curl_walk_are_in_the_readmes_first_40_lines() -> None:
    head = "\n".join(README.read_text().splitlines()[:QUICK_START_LINES])
    for needed in (CLONE_LINE, "make run", "http://localhost:5000/api/", "instance/logs/app.log",
                   "/api/common/sms/send", "/api/auth/register", "/api/auth/login", "/api/users/me",
                   "/api/auth/logout"):
        assert needed in head, f"{needed!r} is not in README.md's first {QUICK_START_LINES} lines"


def test_every_fenced_block_names_its_language() -> None:
    unnamed = [str(block) for page in PAGES for block in fenced_blocks(page) if not block.lang]
    assert not unnamed, f"fenced blocks without a language (sh, python, text, …): {unnamed}"


def test_every_shell_block_is_run_here_or_names_the_test_that_runs_it() -> None:
    unmarked = [str(block) for block in shell_blocks() if not block.marker]
    assert not unmarked, f"shell blocks with no <!-- run --> or <!-- tested-by: … --> marker: {unmarked}"


def test_every_tested_by_file_exists_and_mentions_each_command_of_its_block() -> None:
    blocks = [block for block in shell_blocks() if block.marker == "tested-by"]
    assert blocks
    for block in blocks:
        names = block.argument.split()
        assert names, f"{block}: tested-by names no file"
        missing = [name for name in names if not (PROJECT_DIR / name).is_file()]
        assert not missing, f"{block}: tested-by names files that do not exist: {missing}"
        text = "\n".join((PROJECT_DIR / name).read_text() for name in names)
        for command in commands(block.text):
            absent = [word for word in required_words(command) if word not in text]
            assert not absent, f"{block}: {' '.join(command)!r}: {names} never mention {absent}"


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the headings of ``page``."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_every_relative_link_points_at_a_file_and_heading_of_the_project() -> None:
    broken = []
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", page.read_text()):
            if "://" in target:
                continue
            path = page.parent / target
            if not path.exists() or (anchor and anchor not in anchors(path)):
                broken.append(f"{page.relative_to(PROJECT_DIR)}: {target}#{anchor}")
    assert not broken, f"links to missing files or headings: {broken}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    text = README.read_text()
    unlinked = [page.name for page in PAGES[1:] if f"docs/{page.name}" not in text]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_every_setting_in_a_python_example_exists_in_config_default() -> None:
    import config_default

    def unknown(example: dict, defaults: dict, path: str = "") -> list[str]:
        found = []
        for key, value in example.items():
            if key not in defaults:
                found.append(path + key)
            elif isinstance(value, dict) and isinstance(defaults[key], dict):
                found += unknown(value, defaults[key], f"{path}{key}.")
        return found

    examples = 0
    for block in [block for page in PAGES for block in fenced_blocks(page) if block.lang == "python"]:
        for node in ast.walk(ast.parse(block.text)):
            if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["configs"]:
                examples += 1
                bad = unknown(ast.literal_eval(node.value), config_default.configs)
                assert not bad, f"{block}: settings that config_default.py does not have: {bad}"
    assert examples


# --- docs/security.md: the OWASP ASVS 5.0 table ---------------------------------------------------


SECURITY = PROJECT_DIR / "docs" / "security.md"
# Every level 1 and 2 requirement of ASVS 5.0.0 (tag v5.0.0_release) chapters V6 and V7, with its level.
ASVS = {
    "6.1.1": 1, "6.1.2": 2, "6.1.3": 2,
    "6.2.1": 1, "6.2.2": 1, "6.2.3": 1, "6.2.4": 1, "6.2.5": 1, "6.2.6": 1, "6.2.7": 1, "6.2.8": 1,
    "6.2.9": 2, "6.2.10": 2, "6.2.11": 2, "6.2.12": 2,
    "6.3.1": 1, "6.3.2": 1, "6.3.3": 2, "6.3.4": 2,
    "6.4.1": 1, "6.4.2": 1, "6.4.3": 2, "6.4.4": 2,
    "6.5.1": 2, "6.5.2": 2, "6.5.3": 2, "6.5.4": 2, "6.5.5": 2,
    "6.6.1": 2, "6.6.2": 2, "6.6.3": 2,
    "6.8.1": 2, "6.8.2": 2, "6.8.3": 2, "6.8.4": 2,
    "7.1.1": 2, "7.1.2": 2, "7.1.3": 2,
    "7.2.1": 1, "7.2.2": 1, "7.2.3": 1, "7.2.4": 1,
    "7.3.1": 2, "7.3.2": 2,
    "7.4.1": 1, "7.4.2": 1, "7.4.3": 2, "7.4.4": 2, "7.4.5": 2,
    "7.5.1": 2, "7.5.2": 2,
    "7.6.1": 2, "7.6.2": 2,
}
CITED_TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
# What an operation that lets someone in answers: a session's tokens, a ticket, or a step-up's window.
WAY_IN_FIELDS = {"refresh_token", "mfa_ticket", "sms_ticket", "reauth_expires_in"}


def section(page: Path, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of its level or above."""
    lines = page.read_text().splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    end = next((i for i in range(start + 1, len(lines))
                if re.match(rf"^#{{1,{level}}} ", lines[i])), len(lines))
    return "\n".join(lines[start + 1:end])


def asvs_rows() -> list[list[str]]:
    """The cells of each row of the ASVS tables: requirement, level, what the project does, proved by."""
    rows = []
    for line in SECURITY.read_text().splitlines():
        if re.match(r"^\| \d+\.\d+\.\d+ — ", line):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            assert len(cells) == 4, f"docs/security.md: an ASVS row needs 4 cells (no | inside one): {line}"
            rows.append(cells)
    return rows


def test_the_asvs_table_has_every_level_1_and_2_requirement_of_v6_and_v7_once_with_its_level() -> None:
    rows = asvs_rows()
    found = [cells[0].split(" — ")[0] for cells in rows]
    assert found == list(ASVS), f"docs/security.md: ASVS rows out of order, missing or extra: {found}"
    wrong_level = [cells[0] for cells in rows if cells[1] != f"L{ASVS[cells[0].split(' — ')[0]]}"]
    assert not wrong_level, f"rows whose level is not the standard's: {wrong_level}"


def test_every_asvs_row_is_proved_by_a_test_or_says_why_not() -> None:
    """A row names a test, or says it is not applicable or holds by construction; none is left missing."""
    unproved = [cells[0] for cells in asvs_rows()
                if not CITED_TEST.search(cells[3]) and not cells[2].startswith("Not applicable")
                and "by construction" not in cells[3]]
    assert not unproved, f"ASVS rows with no test and no reason: {unproved}"
    missing = [cells[0] for cells in asvs_rows()
               if re.search(r"\bmissing\b", CITED_TEST.sub("", " ".join(cells)), re.I)]
    assert not missing, f"ASVS rows left missing: {missing}"


def test_every_test_the_security_page_cites_exists() -> None:
    absent = []
    for path, name in CITED_TEST.findall(SECURITY.read_text()):
        file = PROJECT_DIR / path
        tree = ast.parse(file.read_text()) if file.is_file() else ast.Module(body=[], type_ignores=[])
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        if name not in defined:
            absent.append(f"{path}::{name}")
    assert not absent, f"docs/security.md cites tests that do not exist: {sorted(set(absent))}"


def test_every_setting_the_security_page_names_is_in_config_default() -> None:
    import config_default  # as in the test of the python examples above: read when the test runs

    absent = object()
    unknown = set()
    for name in re.findall(r"`([a-z_]+(?:\.[a-z0-9_]+)+)`", SECURITY.read_text()):
        if name.split(".")[0] not in config_default.configs:
            continue  # a module or a function, not a setting
        value: object = config_default.configs
        for part in name.split("."):
            value = value.get(part, absent) if isinstance(value, dict) else absent
        if value is absent:
            unknown.add(name)
    assert not unknown, f"docs/security.md names settings that config_default.py does not have: {sorted(unknown)}"


def test_every_way_in_of_the_api_is_on_the_security_page(client) -> None:
    """Ways in (ASVS 6.1.3, 6.3.4) lists every operation that answers tokens, a ticket or a step-up, and only
    operations the API has."""
    spec = client.get("/api/swagger.json").get_json()

    def model(schema: dict) -> dict:
        ref = schema.get("$ref")
        return spec["definitions"][ref.rsplit("/", 1)[-1]] if ref else schema

    operations, ways_in = set(), set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            name = f"{method.upper()} {spec['basePath'].rstrip('/')}{path}"
            operations.add(name)
            for code, response in operation["responses"].items():
                if code.startswith("2") and "schema" in response:
                    data = model(model(response["schema"]).get("properties", {}).get("data", {}))
                    if WAY_IN_FIELDS & set(data.get("properties", {})):
                        ways_in.add(name)
    listed = set(re.findall(r"`((?:GET|POST|PUT|PATCH|DELETE) /api/[^`\s]*)`", section(SECURITY, "### Ways in")))
    assert ways_in, "no operation answers a token: the check is looking at the wrong fields"
    assert not ways_in - listed, f"ways in that docs/security.md's Ways in does not list: {sorted(ways_in - listed)}"
    assert not listed - operations, f"Ways in lists operations the API does not have: {sorted(listed - operations)}"


# --- running them --------------------------------------------------------------------------------


def clone_env() -> dict[str, str]:
    """A reader's environment: none of this suite's services, settings or make variables."""
    return {key: value for key, value in os.environ.items()
            if key not in SCRUBBED and not key.startswith(("APP_", "TEST_", "BENCH_"))}


def fresh_clone(parent: Path) -> Path:
    """`git clone` of the project with its uncommitted changes, and the project's virtual environment.

    The venv is reused, not reinstalled: .venv is a directory of links to the project's one, with its
    own make stamps (newer than the clone's requirements files), so make installs nothing.
    """
    clone = parent / "flask-restx-starter"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT_DIR), str(clone)], check=True, timeout=60)
    git = ["git", "-C", str(PROJECT_DIR)]
    changed = subprocess.run([*git, "diff", "--name-only", "-z", "HEAD"], capture_output=True, check=True).stdout
    new = subprocess.run([*git, "ls-files", "--others", "--exclude-standard", "-z"], capture_output=True,
                         check=True).stdout
    for name in filter(None, (changed + new).decode().split("\0")):
        source, target = PROJECT_DIR / name, clone / name
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists():
            target.unlink()
    venv = clone / ".venv"
    venv.mkdir()
    for entry in (PROJECT_DIR / ".venv").resolve().iterdir():
        if entry.name not in (".runtime", ".dev"):
            (venv / entry.name).symlink_to(entry)
    (venv / ".runtime").touch()
    (venv / ".dev").touch()
    return clone


class Reader:
    """Runs the blocks in a clone as a reader would, keeping the servers they start until the end."""

    def __init__(self, clone: Path, logs: Path) -> None:
        self.clone, self.logs, self.env = clone, logs, clone_env()
        self.servers: list[tuple[subprocess.Popen, Path]] = []
        self.port = 0  # the first server's: what localhost:5000 means

    def shell(self, block: Block, script: str) -> None:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.clone, env=self.env,
                                capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, (f"{block} exited {result.returncode}:\n{script}\n--- stdout\n"
                                        f"{result.stdout}\n--- stderr\n{result.stderr}{self.server_output()}")

    def run(self, block: Block) -> None:
        after = AFTER.match(block.argument) if block.argument else None
        if after:
            path = self.clone / after["file"]
            wait_until(lambda: path.exists() and after["text"] in path.read_text(), timeout=10)
        self.shell(block, block.text.replace("localhost:5000", f"localhost:{self.port}"))

    def background(self, block: Block) -> None:
        lines = [line for line in block.text.splitlines() if line.strip() and line.strip() != CLONE_LINE]
        if len(lines) > 1:
            self.shell(block, "\n".join(lines[:-1]))
        port = free_port()
        command = lines[-1]
        env = dict(self.env)
        if re.search(r"--port \d+", command):
            command = re.sub(r"--port \d+", f"--port {port}", command)
        else:
            env["SERVER_ARGS"] = f"--port {port}"
        out = self.logs / f"server-{len(self.servers)}.out"
        with out.open("wb") as file:
            process = subprocess.Popen(["bash", "-c", command], cwd=self.clone, env=env, stdout=file,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append((process, out))

        def ready() -> bool:
            assert process.poll() is None, f"{block}: {command!r} exited {process.returncode}:\n{out.read_text()}"
            return requests.get(f"http://127.0.0.1:{port}/api/health/live", timeout=1).status_code == 200

        wait_until(ready, timeout=60)
        self.port = self.port or port

    def server_output(self) -> str:
        return "".join(f"\n--- {out.name}\n{out.read_text()[-3000:]}" for _, out in self.servers)

    def stop(self) -> None:
        for process, _ in self.servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.servers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    logs = tmp_path / "logs"
    logs.mkdir()
    reader = Reader(fresh_clone(tmp_path), logs)
    yield reader
    reader.stop()


@pytest.mark.e2e
def test_every_run_block_works_as_written_on_a_fresh_clone(reader: Reader) -> None:
    """The quick start (make run, the curl walk reading the SMS code from the log), migrations and the rest."""
    ran = 0
    for block in shell_blocks():
        if block.marker == "run" and block.argument == "background":
            reader.background(block)
        elif block.marker == "run":
            reader.run(block)
        else:
            continue
        ran += 1
    assert ran and reader.port, "no run blocks, or none that starts a server"


@pytest.mark.e2e
def test_make_bench_runs_as_documented(tmp_path: Path) -> None:
    """docs/performance.md's `make bench`, one short round of two scenarios. make bench installs the other servers
    (bench/requirements.txt); this test installs nothing, so it runs where they are already in the virtual
    environment."""
    import importlib.util

    import psycopg

    if importlib.util.find_spec("gunicorn") is None:
        pytest.skip("gunicorn is not installed: .venv/bin/pip install -r bench/requirements.txt")
    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=2).close()
    except psycopg.Error as exc:
        service_missing("PostgreSQL for make bench", exc)
    clone = fresh_clone(tmp_path)
    before = set((clone / "bench" / "results").glob("*.md"))
    env = {**clone_env(), "BENCH_ARGS": "--rounds 1 --seconds 0.5 --processes 1 --scenarios live,me"}
    result = subprocess.run(["make", "bench"], cwd=clone, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    [report] = set((clone / "bench" / "results").glob("*.md")) - before
    for other in ("gunicorn", "uwsgi", "granian"):  # every server of bench/requirements.txt took part
        assert f"| tornado / {other}, `GET /api/users/me` |" in report.read_text(), result.stdout
    assert "round 1 tornado   GET /api/users/me" in report.read_text()  # every round is kept, not only the median
