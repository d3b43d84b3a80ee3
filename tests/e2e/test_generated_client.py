"""A Python client generated from /api/openapi.json by openapi-python-client makes the README's quick start calls
against a real server: an SMS code, register, log in, who am I (Bearer and the token header), an upload, log out.

The generation is the command docs/api-spec.md shows, with --fail-on-warning: every operation, model and response
of the spec must be one the generator understands, or the test fails.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wait_until

pytestmark = pytest.mark.e2e

PHONE, PASSWORD = "13800138000", "correct horse battery"
PACKAGE = "starter_client"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture
def server(live_server, tmp_path):
    outbox = tmp_path / "outbox.jsonl"
    return live_server(env={"APP_SMS__GATEWAY": "file", "APP_SMS__OUTBOX": str(outbox)}), outbox


@pytest.fixture
def generated(server, tmp_path, monkeypatch):
    """The client package generated from the live server's spec, imported from tmp_path (and forgotten after)."""
    live, _ = server
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # its ruff hooks
    result = subprocess.run(
        [str(GENERATOR), "generate", "--url", f"{live.url}/api/openapi.json", "--meta", "none",
         "--output-path", str(tmp_path / PACKAGE), "--fail-on-warning"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    monkeypatch.syspath_prepend(str(tmp_path))
    yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    for name in [module for module in sys.modules if module == PACKAGE or module.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def last_code(outbox: Path) -> str:
    return str(json.loads(outbox.read_text().splitlines()[-1])["code"])


def test_the_generated_client_makes_the_quick_start_calls(server, generated):
    live, outbox = server
    client_module, models = generated("client"), generated("models")
    api = f"{live.url}/api"
    anonymous = client_module.Client(base_url=api, raise_on_unexpected_status=True)

    sent = generated("api.common.post_sms_send").sync(client=anonymous, body=models.SmsSendRequest(
        phone=PHONE, purpose=models.SmsSendRequestPurpose.REGISTER))
    assert isinstance(sent, models.SmsSentEnvelope), sent
    wait_until(outbox.exists)
    registered = generated("api.auth.post_register").sync(client=anonymous, body=models.Register(
        phone=PHONE, password=PASSWORD, nickname="me", sms_code=last_code(outbox)))
    assert isinstance(registered, models.UserEnvelope), registered
    assert (registered.code, registered.data.phone, registered.data.email) == (201, "+8613800138000", None)

    logged_in = generated("api.auth.post_login").sync(client=anonymous, body=models.Login(
        account=PHONE, password=PASSWORD))
    assert isinstance(logged_in, models.LoginResultEnvelope), logged_in
    token = logged_in.data.token
    get_me = generated("api.users.get_me")
    by_bearer = client_module.AuthenticatedClient(base_url=api, token=token)  # Authorization: Bearer <token>
    by_header = client_module.AuthenticatedClient(base_url=api, token=token, prefix="", auth_header_name="token")
    for client in (by_bearer, by_header):
        me = get_me.sync(client=client)
        assert isinstance(me, models.UserEnvelope), me
        assert (me.data.id, me.data.nickname, me.data.last_login_at is not None) == (registered.data.id, "me", True)

    picture = generated("types").File(payload=io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
                                      file_name="picture.png", mime_type="image/png")
    stored = generated("api.files.post_files").sync(client=by_bearer, body=models.PostFilesBody(file=picture))
    assert isinstance(stored, models.FileEnvelope), stored
    assert (stored.code, stored.data.filename, stored.data.size) == (201, "picture.png", 72)

    logged_out = generated("api.sessions.post_logout").sync(client=by_bearer)
    assert isinstance(logged_out, models.EmptyEnvelope), logged_out
    refused = get_me.sync_detailed(client=by_bearer)
    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.Error)
    assert (refused.parsed.status, refused.parsed.field) == ("NOT_AUTHORIZED", None)
