"""Log lines cannot be forged or garbled by what a client sends, and @log_record never logs a secret's value."""

from __future__ import annotations

import http.client
import json
import logging

import pytest

from tests.support import wait_until

FORGED = "2026-11-29 01:00:00,000 INFO [7232] app.access [abc] POST /api/auth/login 200 1.0ms user=1 ip=10.0.0.1"
# (percent-encoded payload, the character it decodes to, how the log line must show it)
PAYLOADS = [
    ("%0a", "\n", r"\n"),
    ("%0d", "\r", r"\r"),
    ("%1b[31m", "\x1b", r"\x1b"),
    ("%00", "\x00", r"\x00"),
    ("%e2%80%a8", "\u2028", r"\u2028"),
]
IDS = ["LF", "CR", "ESC", "NUL", "U+2028"]


def attack_path(encoded: str) -> str:
    return "/api/health" + encoded + FORGED.replace(" ", "%20")


def flushed(path) -> str:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


def access_lines(text: str) -> list[str]:
    """The access lines of a log, split as any line-oriented tool (or str.splitlines) would, probes aside."""
    return [line for line in text.splitlines() if "app.access" in line and "/api/health/live 200" not in line]


@pytest.mark.parametrize(("encoded", "raw", "escaped"), PAYLOADS, ids=IDS)
def test_a_control_character_in_the_path_cannot_forge_a_log_line(make_app, tmp_path, encoded, raw, escaped):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile)}}).test_client()
    assert client.get(attack_path(encoded)).status_code == 404
    text = flushed(logfile)
    [line] = access_lines(text)
    assert raw == "\n" or raw not in text
    assert f"GET /api/health{escaped}" in line and FORGED in line and line.endswith("ip=127.0.0.1")


@pytest.mark.parametrize(("encoded", "raw", "escaped"), PAYLOADS, ids=IDS)
def test_a_control_character_cannot_break_a_json_log_line(make_app, tmp_path, encoded, raw, escaped):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile), "format": "json"}}).test_client()
    client.get(attack_path(encoded))
    text = flushed(logfile)
    [line] = access_lines(text)
    assert raw == "\n" or raw not in text
    message = json.loads(line)["message"]
    assert message.startswith(f"GET /api/health{raw}") and FORGED in message


def test_the_real_server_logs_each_forging_attempt_as_one_escaped_line(live_server, server_env):
    from pathlib import Path

    server = live_server()
    logfile = Path(server_env["APP_LOG__FILE"])
    for number, (encoded, _, _) in enumerate(PAYLOADS):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", attack_path(encoded), headers={"X-Request-ID": f"forge-{number}"})
        assert connection.getresponse().status == 404
        connection.close()
    wait_until(lambda: "[forge-4]" in logfile.read_text(encoding="utf-8"))
    text = logfile.read_text(encoding="utf-8")
    lines = access_lines(text)
    assert len(lines) == len(PAYLOADS), lines
    for number, (_, raw, escaped) in enumerate(PAYLOADS):
        assert raw == "\n" or raw not in text
        [line] = [line for line in lines if f"[forge-{number}]" in line]
        assert f"GET /api/health{escaped}" in line and FORGED in line


def test_a_long_path_is_cut_in_the_log_line(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile)}}).test_client()
    client.get("/api/" + "a" * 20_000)
    [line] = access_lines(flushed(logfile))
    assert len(line) < 5000 and "chars)" in line


def test_a_line_separator_in_a_logged_query_is_escaped(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile)}}).test_client()
    client.post("/api/auth/login?note=a%e2%80%a8" + FORGED.replace(" ", "%20"),
                json={"account": "13800138000", "password": "p"})
    text = flushed(logfile)
    assert "\u2028" not in text and len(text.splitlines()) == 2  # the access line and the record line
    [line] = [line for line in text.splitlines() if "app.record" in line]
    assert '"note": "a\\u2028' + FORGED in line


# --- F13: secrets under names outside log.redact ------------------------------------------------------------


def test_the_detail_line_logs_no_value_of_a_secret_looking_or_unknown_property(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile)}}).test_client()
    body = {"account": "13800138000", "passwd": "S3cret-1", "pwd": "S3cret-2", "pass word": "S3cret-3",
            "x": "S3cret-4", "nested": {"apiKey": "S3cret-5"}}
    response = client.post("/api/auth/login?access-Token=S3cret-6&page=2", json=body)
    assert response.status_code == 400
    text = flushed(logfile)
    [line] = [line for line in text.splitlines() if "app.record" in line]
    assert "S3cret" not in text
    assert '"account": "13800138000"' in line and '"page": "2"' in line
    for name in ("passwd", "pwd", "pass word", "x", "nested", "access-Token"):
        assert f'"{name}": "[redacted]"' in line


def test_redaction_matches_secret_words_inside_key_names():
    from app.logs import REDACTED, redact

    value = {"PassWord2": "a", "user_pwd": "b", "client-secret": "c", "X-Auth-Header": "d", "smsCode": "e",
             "sessionCookie": "f", "mfa_ticket": "g", "nickname": "keep", "list": [{"Api_Key": "h"}]}
    assert redact(value, ["password"]) == {
        "PassWord2": REDACTED, "user_pwd": REDACTED, "client-secret": REDACTED, "X-Auth-Header": REDACTED,
        "smsCode": REDACTED, "sessionCookie": REDACTED, "mfa_ticket": REDACTED, "nickname": "keep",
        "list": [{"Api_Key": REDACTED}],
    }
