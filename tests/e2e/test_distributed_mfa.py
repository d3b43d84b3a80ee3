"""Two server processes sharing one Redis and one database: a TOTP code and an MFA ticket are each good once, on
whichever process sees them first, even when both see them at the same moment."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import requests

from app import create_app
from app.extensions import db
from app.services.users import create_user
from tests.fixtures.accounts import PASSWORD, Authenticator

pytestmark = pytest.mark.e2e
PHONE = "+8613800138000"


@dataclass
class Cluster:
    first: str
    second: str
    app: Authenticator  # the user's authenticator: TOTP is on
    token: str  # the session that turned it on (recently authenticated)
    recovery_codes: list[str]


def post(url: str, path: str, token: str | None = None, **body: str) -> requests.Response:
    return requests.post(f"{url}/api/auth{path}", json=body, headers={"token": token} if token else {}, timeout=10)


def ticket(url: str) -> str:
    """A login's MFA ticket from the server at ``url``."""
    response = post(url, "/login", account=PHONE, password=PASSWORD)
    assert response.status_code == 200 and response.json()["data"]["mfa_required"] is True, response.text
    return str(response.json()["data"]["mfa_ticket"])


def refused(response: requests.Response, code: int, status: str, field: str | None = None) -> bool:
    body = response.json()
    return (response.status_code, body.get("status"), body.get("field")) == (code, status, field)


@pytest.fixture
def cluster(live_server, real_redis_settings, test_settings) -> Cluster:
    """Two servers on one database and one real Redis; a user who started TOTP on the first and confirmed it on
    the second (the enrolment waits in the shared Redis)."""
    redis = real_redis_settings["redis"]
    env = {"REDIS_URL": redis["url"], "APP_REDIS__PREFIX": redis["prefix"]}
    first, second = live_server(env=env).url, live_server(env=env).url
    app = create_app({**test_settings, **real_redis_settings})
    with app.app_context():
        create_user(PHONE, PASSWORD, "n")
        db.engine.dispose()
    login = post(first, "/login", account=PHONE, password=PASSWORD)
    assert login.status_code == 200, login.text
    token = login.json()["data"]["token"]
    started = post(first, "/mfa/totp", token)
    assert started.status_code == 200, started.text
    authenticator = Authenticator(started.json()["data"]["secret"])
    confirmed = post(second, "/mfa/totp/confirm", token, code=authenticator.code())
    assert confirmed.status_code == 200, confirmed.text
    return Cluster(first, second, authenticator, token, confirmed.json()["data"]["recovery_codes"])


def test_a_code_used_at_login_on_one_process_is_refused_on_the_other(cluster):
    on_second = ticket(cluster.second)
    code = cluster.app.code()
    assert post(cluster.first, "/login/mfa", mfa_ticket=ticket(cluster.first), code=code).status_code == 200
    assert refused(post(cluster.second, "/login/mfa", mfa_ticket=on_second, code=code), 400, "INVALID_FIELD", "code")
    # Refused as a replay, not for the ticket: the same ticket with the next code logs in.
    assert post(cluster.second, "/login/mfa", mfa_ticket=on_second, code=cluster.app.code()).status_code == 200


def test_a_code_used_in_a_reauth_on_one_process_is_refused_on_the_other(cluster):
    code = cluster.app.code()
    assert post(cluster.first, "/reauth", cluster.token, code=code).status_code == 200
    assert refused(post(cluster.second, "/reauth", cluster.token, code=code), 400, "INVALID_FIELD", "code")
    assert refused(post(cluster.second, "/login/mfa", mfa_ticket=ticket(cluster.second), code=code),
                   400, "INVALID_FIELD", "code")
    assert post(cluster.second, "/reauth", cluster.token, code=cluster.app.code()).status_code == 200


def test_a_ticket_used_on_one_process_is_refused_on_the_other(cluster):
    once = ticket(cluster.first)
    assert post(cluster.first, "/login/mfa", mfa_ticket=once, code=cluster.app.code()).status_code == 200
    again = post(cluster.second, "/login/mfa", mfa_ticket=once, code=cluster.app.code())
    assert refused(again, 401, "MFA_REQUIRED"), again.text
    # A recovery code cannot bring it back either.
    again = post(cluster.second, "/login/mfa", mfa_ticket=once, recovery_code=cluster.recovery_codes[0])
    assert refused(again, 401, "MFA_REQUIRED"), again.text


def at_once(*calls: tuple[str, dict]) -> list[requests.Response]:
    """POST each ``(url, body)`` to /api/auth/login/mfa from its own thread, released together over connections
    opened beforehand."""
    sessions = [requests.Session() for _ in calls]
    for session, (url, _) in zip(sessions, calls, strict=True):
        session.get(f"{url}/api/health/live", timeout=5)  # the connection is open before the start
    barrier = threading.Barrier(len(calls))
    answers: list[requests.Response | None] = [None] * len(calls)

    def send(index: int) -> None:
        url, body = calls[index]
        barrier.wait(timeout=10)
        answers[index] = sessions[index].post(f"{url}/api/auth/login/mfa", json=body, timeout=10)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    for session in sessions:
        session.close()
    finished = [answer for answer in answers if answer is not None]
    assert len(finished) == len(calls), "a request did not finish"
    return finished


def test_one_ticket_and_one_code_sent_to_both_processes_at_once_log_in_once(cluster):
    body = {"mfa_ticket": ticket(cluster.first), "code": cluster.app.code()}
    answers = at_once((cluster.first, body), (cluster.second, body))
    statuses = sorted(answer.status_code for answer in answers)
    # The loser finds the code used (400) or, when the winner was done first, the ticket gone (401).
    assert statuses[0] == 200 and statuses[1] in (400, 401), [answer.text for answer in answers]
    # The winner's session works on both processes.
    token = next(answer for answer in answers if answer.status_code == 200).json()["data"]["token"]
    for url in (cluster.first, cluster.second):
        assert requests.get(f"{url}/api/users/me", headers={"token": token}, timeout=5).status_code == 200


def test_two_tickets_and_one_code_sent_to_both_processes_at_once_log_in_once(cluster):
    """Only the code's step, used once, stands between the two."""
    code = cluster.app.code()
    answers = at_once((cluster.first, {"mfa_ticket": ticket(cluster.first), "code": code}),
                      (cluster.second, {"mfa_ticket": ticket(cluster.second), "code": code}))
    assert sorted(answer.status_code for answer in answers) == [200, 400], [answer.text for answer in answers]


def test_one_ticket_and_one_recovery_code_sent_to_both_processes_at_once_log_in_once(cluster):
    for recovery_code in cluster.recovery_codes[:3]:
        body = {"mfa_ticket": ticket(cluster.first), "recovery_code": recovery_code}
        statuses = sorted(answer.status_code for answer in at_once((cluster.first, body), (cluster.second, body)))
        assert statuses[0] == 200 and statuses[1] in (400, 401), statuses
    # Two tickets, one recovery code: still one login.
    code = cluster.recovery_codes[3]
    answers = at_once((cluster.first, {"mfa_ticket": ticket(cluster.first), "recovery_code": code}),
                      (cluster.second, {"mfa_ticket": ticket(cluster.second), "recovery_code": code}))
    assert sorted(answer.status_code for answer in answers) == [200, 400], [answer.text for answer in answers]
