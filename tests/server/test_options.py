"""tornado_server.py's command line, TLS context, listening sockets and CPU pinning."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from certificates import make_certificate

from app.server.options import (
    StartupError,
    listen,
    load_factory,
    parse_args,
    run_on_loop,
    ssl_context,
    url_host,
)
from tests.support import PROJECT_DIR


def cert_settings(certfile: str = "", keyfile: str = "") -> SimpleNamespace:
    return SimpleNamespace(cert=SimpleNamespace(certfile=certfile, keyfile=keyfile))


def test_the_options_default_to_one_process_on_localhost_5000() -> None:
    args = parse_args([])
    assert (args.address, args.port, args.processes, args.cpu, args.app) == (
        "127.0.0.1", 5000, 1, None, "app:create_app")


def test_every_option_is_read() -> None:
    args = parse_args(["--address", "::1", "--port", "8080", "--processes", "0", "--cpu", "3",
                       "--app", "probe_api:create_probe_app"])
    assert (args.address, args.port, args.processes, args.cpu, args.app) == (
        "::1", 8080, 0, 3, "probe_api:create_probe_app")


def test_a_port_that_is_not_a_number_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--port", "http"])
    assert exit_.value.code == 2


def test_the_factory_is_create_app_unless_named() -> None:
    from app import create_app

    assert load_factory("app") is create_app
    assert load_factory("app:create_app") is create_app


@pytest.mark.parametrize(("address", "browsable", "host"), [
    ("127.0.0.1", False, "127.0.0.1"), ("::1", False, "[::1]"), ("0.0.0.0", True, "localhost"),
    ("::", True, "localhost"), ("0.0.0.0", False, "0.0.0.0"), ("::", False, "[::]"),
])
def test_an_address_becomes_a_url_host(address: str, browsable: bool, host: str) -> None:
    assert url_host(address, browsable) == host


def test_no_certificate_means_plain_http() -> None:
    assert ssl_context(cert_settings()) is None


def test_a_certificate_and_key_make_a_server_tls_context(tmp_path: Path) -> None:
    context = ssl_context(cert_settings(*make_certificate(tmp_path)))
    assert isinstance(context, ssl.SSLContext)
    assert not context.check_hostname  # a server context: clients are not asked for certificates
    assert context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("given", ["certfile", "keyfile"])
def test_only_one_of_certificate_and_key_is_a_startup_error(tmp_path: Path, given: str) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    settings = cert_settings(certfile=certfile) if given == "certfile" else cert_settings(keyfile=keyfile)
    with pytest.raises(StartupError, match=r"set both cert\.certfile and cert\.keyfile"):
        ssl_context(settings)


def test_a_key_that_does_not_match_the_certificate_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    certfile, _ = make_certificate(tmp_path / "a")
    _, other_key = make_certificate(tmp_path / "b")
    with pytest.raises(StartupError, match="cannot load the certificate"):
        ssl_context(cert_settings(certfile, other_key))


def test_a_missing_certificate_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot load the certificate"):
        ssl_context(cert_settings(str(tmp_path / "none.pem"), str(tmp_path / "none.key")))


def test_a_port_in_use_is_a_startup_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}: .*choose a port: --port N"):
            listen(parse_args(["--port", str(port)]), reuse_port=False)


PIN = """
import os, threading
from app.server.options import pin_to_cpu
before = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
before.start()
pin_to_cpu({index})
after = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
after.start()
print(sorted({{tuple(sorted(os.sched_getaffinity(int(t)))) for t in os.listdir("/proc/self/task")}}))
"""


@pytest.mark.parametrize("index", [0, 1, 5])
def test_pinning_puts_every_thread_on_the_nth_allowed_cpu_wrapping_around(index: int) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    result = subprocess.run([sys.executable, "-c", PIN.format(index=index)], cwd=PROJECT_DIR, capture_output=True,
                            text=True, timeout=30, check=True)
    assert result.stdout.strip() == str([(allowed[index % len(allowed)],)])


def loop_settings(choice: str) -> SimpleNamespace:
    return SimpleNamespace(server=SimpleNamespace(event_loop=choice))


async def running_loop_type() -> str:
    import asyncio

    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(("choice", "module"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_server_event_loop_chooses_the_loop_the_server_runs_on(choice: str, module: str) -> None:
    assert run_on_loop(running_loop_type(), loop_settings(choice)).split(".")[0] == module  # type: ignore[arg-type]


def test_a_server_asked_for_uvloop_without_it_exits_2(tmp_path: Path) -> None:
    """uvloop hidden from the import system: ``uvloop`` refuses to start, ``auto`` falls back to asyncio's loop."""
    (tmp_path / "uvloop.py").write_text("raise ImportError('hidden for this test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "APP_SERVER__EVENT_LOOP": "uvloop"}
    result = subprocess.run([sys.executable, "tornado_server.py", "--port", "0"], cwd=PROJECT_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "server.event_loop is uvloop, which is not installed" in result.stderr


def test_a_server_asked_for_httptools_without_it_exits_2(tmp_path: Path) -> None:
    (tmp_path / "httptools.py").write_text("raise ImportError('hidden for this test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "APP_SERVER__HTTP": "httptools"}
    result = subprocess.run([sys.executable, "tornado_server.py", "--port", "0"], cwd=PROJECT_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "server.http is httptools, which is not installed" in result.stderr


@pytest.mark.parametrize(("hidden", "parser"), [(False, "httptools"), (True, "tornado")])
def test_server_http_auto_uses_httptools_where_installed(live_server: Any, server_env: dict[str, str],
                                                         tmp_path: Path, hidden: bool, parser: str) -> None:
    """The default (``auto``) parses with httptools; with httptools hidden it falls back to Tornado and serves."""
    server_env.pop("APP_SERVER__HTTP", None)
    if hidden:
        (tmp_path / "hidden").mkdir()
        (tmp_path / "hidden" / "httptools.py").write_text("raise ImportError('hidden for this test')\n")
        server_env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "hidden"), server_env["PYTHONPATH"]])
    server = live_server()
    assert f"HTTP/1.1 parsed by {parser};" in server.output()
