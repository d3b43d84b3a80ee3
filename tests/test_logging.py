"""logging.ini: loaded at start, log directory made, request ids on every line, ERROR mails when enabled; one
process per log file (a forked child, tornado_server.py --processes 2 with rotation)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app.log_output import BackgroundHandler
from app.logs import AdminMailHandler
from tests.fixtures.accounts import PASSWORD, login, send_sms_code
from tests.support import PROJECT_DIR, SECRET, deep_merge, free_port, wait_until


def test_log_directory_is_made_and_lines_carry_the_request_id(make_app, tmp_path):
    logfile = tmp_path / "deep" / "er" / "app.log"
    app = make_app({"log": {"file": str(logfile)}, "redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}})
    app.test_client().get("/api/health", headers={"X-Request-ID": "trace-77"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = logfile.read_text()
    assert "[trace-77] health: redis unreachable" in text


def test_lines_outside_a_request_carry_a_dash(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    make_app({"log": {"file": str(logfile)}})
    logging.getLogger("probe").warning("outside any request")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "[-] outside any request" in logfile.read_text()


def test_error_mail_handler_is_configured_but_off_by_default(make_app, smtp):
    port, inbox = smtp
    app = make_app({"mail": {"server": "127.0.0.1", "port": port, "admins": ["ops@example.com"]}})
    assert any(isinstance(h, AdminMailHandler) for h in logging.getLogger().handlers)
    with app.app_context():
        logging.getLogger("probe").error("nobody should be mailed")
        logging.getLogger("probe").warning("marker")
    assert inbox.messages == []


def test_error_records_are_mailed_to_admins_when_enabled(make_app, smtp):
    port, inbox = smtp
    app = make_app({
        "log": {"mail_errors": True},
        "mail": {"server": "127.0.0.1", "port": port, "admins": ["ops@example.com"]},
    })
    with app.app_context():
        logging.getLogger("probe").warning("not an error")
        logging.getLogger("probe").error("disk on fire")
    wait_until(lambda: inbox.messages, timeout=5)
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message.rcpt_tos == ["ops@example.com"]
    assert "disk on fire" in message.content.decode()


# --- request logging, redaction, tasks ---------------------------------------------------------------


def flushed(path) -> str:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text()


def test_every_request_gets_an_access_line_with_its_request_id(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile)}}).test_client()
    client.get("/api/health/live", headers={"X-Request-ID": "client-chosen-42"})
    client.get("/api/nope")
    lines = flushed(logfile).splitlines()
    assert any("app.access [client-chosen-42] GET /api/health/live 200" in line and "ip=127.0.0.1" in line
               for line in lines)
    assert any("GET /api/nope 404" in line for line in lines)


def test_log_record_lines_carry_body_status_and_user_with_secrets_redacted(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile)}}).test_client()
    client.post("/api/auth/login", json={"account": "13800138000", "password": "hunter2-secret"},
                headers={"X-Request-ID": "rec-1"})
    text = flushed(logfile)
    [line] = [line for line in text.splitlines() if "app.record" in line]
    assert "[rec-1] POST /api/auth/login" in line and "-> 401" in line
    assert '"account": "13800138000"' in line and '"password": "[redacted]"' in line
    assert "hunter2-secret" not in text


def test_redact_hides_secret_keys_at_any_depth_in_any_case():
    from app.logs import REDACTED, redact

    value = {"Password": "p", "nested": [{"token": "t", "keep": 1}, {"deeper": {"SMS_CODE": "c"}}], "n": None}
    assert redact(value, ["password", "token", "sms_code"]) == {
        "Password": REDACTED, "nested": [{"token": REDACTED, "keep": 1}, {"deeper": {"SMS_CODE": REDACTED}}],
        "n": None,
    }


def test_long_bodies_are_cut(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile), "body_limit": 40}}).test_client()
    client.post("/api/auth/login", json={"account": "x" * 500, "password": "p"})
    [line] = [line for line in flushed(logfile).splitlines() if "app.record" in line]
    assert "x" * 100 not in line and "chars)" in line


def test_json_format_writes_one_object_per_line(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile), "format": "json"}}).test_client()
    client.get("/api/health/live", headers={"X-Request-ID": "json-1"})
    import json

    entries = [json.loads(line) for line in flushed(logfile).splitlines()]
    access = [e for e in entries if e["logger"] == "app.access"]
    assert access[0]["request_id"] == "json-1" and "GET /api/health/live 200" in access[0]["message"]


def test_a_failing_task_is_logged_with_its_request_id(make_app, tmp_path):
    from probe_api import PROBE

    logfile = tmp_path / "app.log"
    app = make_app({"log": {"file": str(logfile)}}, extra_namespaces=[PROBE])
    response = app.test_client().post("/api/probe/task?fail=1", headers={"X-Request-ID": "task-7"})
    assert response.status_code == 200
    wait_until(lambda: "task probe_api._slow_task failed" in flushed(logfile), timeout=10)
    text = flushed(logfile)
    assert "[task-7] task probe_api._slow_task failed" in text
    assert "ValueError: the probe task failed on purpose" in text


def test_logs_hold_no_password_token_or_code_after_the_account_flows(make_app, accounts_settings, tmp_path):
    logfile = tmp_path / "flows" / "app.log"
    app = make_app(deep_merge(accounts_settings, {"log": {"file": str(logfile)}}))
    client = app.test_client()
    secrets: list[str] = []

    def sms(purpose: str) -> str:
        secrets.append(send_sms_code(client, app, "13800138000", purpose))
        return secrets[-1]

    password, new_password = "first-secret-password", "second-secret-password"
    secrets += [password, new_password]
    ticket = client.post("/api/common/sms/verify", json={"phone": "13800138000", "purpose": "register",
                                                          "code": sms("register")}).get_json()["data"]["sms_ticket"]
    secrets.append(ticket)
    assert client.post("/api/auth/register", json={"phone": "13800138000", "password": password, "nickname": "n",
                                                   "sms_ticket": ticket}).status_code == 201
    tokens = client.post("/api/auth/login", json={"account": "13800138000", "password": password}).get_json()["data"]
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).get_json()["data"]
    secrets += [tokens["token"], tokens["refresh_token"], refreshed["token"], refreshed["refresh_token"]]
    client.get("/api/users/me", headers={"Authorization": f"Bearer {refreshed['token']}"})
    client.put("/api/auth/password", json={"old_password": password, "new_password": new_password},
               headers={"token": refreshed["token"]})
    assert client.post("/api/auth/password/reset", json={"phone": "13800138000", "sms_code": sms("reset_password"),
                                                         "new_password": password}).status_code == 200
    text = flushed(logfile)
    assert text.count("app.record") >= 8  # the flows were logged in detail …
    for secret in secrets:
        assert secret not in text  # … without one of their secrets


def test_the_access_and_record_lines_of_a_login_or_refresh_name_the_user_who_signed_in(make_app, accounts_settings,
                                                                                      tmp_path):
    from app.services.users import create_user

    logfile = tmp_path / "login" / "app.log"
    app = make_app(deep_merge(accounts_settings, {"log": {"file": str(logfile)}}))
    with app.app_context():
        user_id = create_user("+8613800138000", PASSWORD, "n").id
    client = app.test_client()
    tokens = login(client, "13800138000", headers={"X-Request-ID": "login-1"})
    client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, headers={"X-Request-ID": "r-1"})
    lines = flushed(logfile).splitlines()
    for request_id, path in (("login-1", "/api/auth/login"), ("r-1", "/api/auth/refresh")):
        [access] = [line for line in lines if f"app.access [{request_id}] POST {path} 200" in line]
        [record] = [line for line in lines if f"app.record [{request_id}]" in line]
        assert f"user={user_id} " in access and record.endswith(f"user={user_id}")


class SlowHandler(logging.Handler):
    """A handler whose every write takes ``delay`` seconds (a slow disk); keeps what it wrote."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay, self.written = delay, []

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(self.delay)
        self.written.append(record.getMessage())


def test_logging_never_waits_for_the_writer_and_close_writes_everything():
    slow = SlowHandler(0.2)
    background = BackgroundHandler([slow])
    probe = logging.getLogger("probe.background")
    probe.propagate, probe.level = False, logging.INFO
    probe.addHandler(background)
    try:
        started = time.monotonic()
        for number in range(10):
            probe.info("line %d", number)
        assert time.monotonic() - started < 0.5  # written one by one, they take 2 s
        wait_until(lambda: slow.written, timeout=5)  # the writer gets to them without being asked
    finally:
        probe.removeHandler(background)
        background.close()
    assert slow.written == [f"line {number}" for number in range(10)]


# --- one process per log file ------------------------------------------------------------------


def test_an_empty_log_file_setting_means_the_console_only(make_app):
    """supervisord.ini's APP_LOG__FILE="": the environment gives an empty string, and no file handler is made."""
    from app.config import load_configs

    assert load_configs(environ={"APP_LOG__FILE": ""}).log.file == ""
    make_app({"log": {"file": ""}})
    [background] = [h for h in logging.getLogger().handlers if isinstance(h, BackgroundHandler)]
    assert [type(h) for h in background.handlers] == [logging.StreamHandler]


FORKING = """
import logging, os, sys
from app.config import load_configs
from app.log_output import configure_logging
configure_logging(load_configs({"log": {"file": sys.argv[1]}}))
log = logging.getLogger("probe")
log.warning("parent before the fork")
pid = os.fork()
if pid == 0:  # as a Celery pool process: logs, then leaves with os._exit
    log.warning("child line")
    logging.shutdown()
    os._exit(0)
os.waitpid(pid, 0)
log.warning("parent after the fork")
"""


def test_a_forked_child_logs_to_the_console_and_leaves_the_file_to_its_parent(tmp_path):
    logfile = tmp_path / "app.log"
    run = subprocess.run([sys.executable, "-c", FORKING, str(logfile)], cwd=PROJECT_DIR, capture_output=True,
                         text=True, timeout=30, env={**os.environ, "SECRET_KEY": SECRET})
    assert run.returncode == 0, run.stderr
    file_lines = logfile.read_text().splitlines()
    assert [line.split("] ")[-1] for line in file_lines] == ["parent before the fork", "parent after the fork"]
    for line in ("parent before the fork", "child line", "parent after the fork"):
        assert run.stderr.count(line) == 1, run.stderr


@pytest.mark.e2e
def test_two_server_processes_each_write_their_own_file_and_rotation_loses_no_line(live_server, real_redis_settings,
                                                                                      server_env, tmp_path):
    """tornado_server.py --processes 2 with files of 2,000 bytes: each access line once in app-0.log* or
    app-1.log* (both children served, both rotated), once on the console, none in the parent's app.log."""
    ini = tmp_path / "tiny.ini"
    shipped = (PROJECT_DIR / "logging.ini").read_text()
    assert "10485760, 5," in shipped, "logging.ini's rotation arguments changed: update this test"
    ini.write_text(shipped.replace("10485760, 5,", "2000, 1000,"))
    server = live_server("--processes", "2", env={"REDIS_URL": real_redis_settings["redis"]["url"],
                                                  "APP_LOG__INI": str(ini)})
    ids = [f"count-{n}" for n in range(150)]
    for request_id in ids:  # a new connection each: the kernel spreads them over both children
        assert requests.get(f"{server.url}/api/health/live", headers={"X-Request-ID": request_id},
                            timeout=5).status_code == 200
    assert server.stop() == 0  # each process writes what it still holds as it exits
    logs = Path(server_env["APP_LOG__FILE"]).parent
    per_child = {index: "".join(p.read_text() for p in logs.glob(f"app-{index}.log*")) for index in (0, 1)}
    assert sorted(p.name for p in logs.glob("app*.log*") if not p.name.startswith(("app-0.", "app-1."))) \
        <= ["app.log"]  # no file per pid; the parent's own
    parent = (logs / "app.log").read_text() if (logs / "app.log").exists() else ""
    console = server.output()
    for request_id in ids:
        access = f"app.access [{request_id}]"
        assert (per_child[0].count(access), per_child[1].count(access)) in {(1, 0), (0, 1)}, request_id
        assert console.count(access) == 1 and access not in parent, request_id
    for index in (0, 1):
        assert "app.access" in per_child[index] and (logs / f"app-{index}.log.1").exists()
