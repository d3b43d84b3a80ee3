"""Background jobs on Celery: real workers, a real Redis broker and a real SMTP server (aiosmtpd).

A mail accepted by the API reaches the SMTP server exactly once, whatever happens to the worker or the server.
"""

from __future__ import annotations

import email
import time
from collections import Counter

import pytest
import redis
from aiosmtpd.controller import Controller

from app.extensions import db
from app.services.users import create_user
from tests.fixtures.celery_workers import broker_idle
from tests.fixtures.mail import GatedInbox, Inbox, recipients
from tests.support import deep_merge, free_port, wait_until

pytestmark = pytest.mark.e2e


def test_a_worker_killed_in_the_middle_of_a_mail_leaves_it_to_the_next_who_sends_it_once(
        make_app, jobs_settings, celery_worker):
    inbox = GatedInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings = deep_merge(jobs_settings, {"mail": {"server": "127.0.0.1", "port": controller.port,
                                                       "suppress": False}})
        app = make_app(settings)
        with app.app_context():
            create_user("+8613800138000", "correct horse battery", "小明", "me@example.com")
            db.session.remove()
        first = celery_worker(settings, app)
        answer = app.test_client().post("/api/auth/password/forgot", json={"email": "me@example.com"},
                                        headers={"X-Request-ID": "forgot-kill-9"})
        assert answer.status_code == 200
        wait_until(lambda: inbox.held, timeout=20)  # the worker is inside the SMTP conversation

        first.kill()
        controller.loop.call_soon_threadsafe(inbox.gate.set)
        started = time.monotonic()
        second = celery_worker(settings, app)
        wait_until(lambda: inbox.messages, timeout=30)
        print(f"mail delivered {time.monotonic() - started:.1f} s after the second worker started")
        wait_until(lambda: broker_idle(settings), timeout=20)
        assert recipients(inbox) == {"me@example.com": 1}
        assert "reset" in email.message_from_bytes(inbox.messages[0].content)["Subject"].lower()
        wait_until(lambda: "forgot-kill-9" in second.log(), timeout=10)  # the request id travelled with the task
    finally:
        controller.stop()


def test_smtp_down_for_twenty_seconds_loses_and_duplicates_no_reset_mail(make_app, jobs_settings, celery_worker):
    inbox, port = Inbox(), free_port()
    settings = deep_merge(jobs_settings, {
        "mail": {"server": "127.0.0.1", "port": port, "suppress": False, "timeout": 2.0},
        "jobs": {"retry_backoff_max": 4, "max_retries": 20, "visibility_timeout": 60},
        "auth": {"reset_mails_per_ip": 100},
    })
    app = make_app(settings)
    addresses = [f"user{n}@example.com" for n in range(50)]
    with app.app_context():
        for n, address in enumerate(addresses):
            create_user(f"+86138001{n:05d}", "correct horse battery", f"user {n}", address)
        db.session.remove()
    celery_worker(settings, app)
    client = app.test_client()

    down_since = time.monotonic()
    for address in addresses:
        assert client.post("/api/auth/password/forgot", json={"email": address}).status_code == 200
    wait_until(lambda: time.monotonic() - down_since >= 20, timeout=30, interval=0.5)
    assert inbox.messages == []
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        wait_until(lambda: len(recipients(inbox)) == 50, timeout=60, interval=0.2)
        print(f"all 50 mails arrived {time.monotonic() - down_since:.1f} s after the first request")
        wait_until(lambda: broker_idle(settings), timeout=30)
        assert recipients(inbox) == Counter(dict.fromkeys(addresses, 1))
    finally:
        controller.stop()


def test_health_reports_whether_a_worker_answers(make_app, jobs_settings, celery_worker):
    app = make_app(jobs_settings)
    client = app.test_client()
    started = time.monotonic()
    down = client.get("/api/health")
    assert time.monotonic() - started < 2  # a missing worker does not make a slow health check
    assert (down.status_code, down.get_json()["data"]["jobs"]) == (200, "down")  # the API still serves
    celery_worker(jobs_settings, app)
    # the answer is kept 10 s
    wait_until(lambda: client.get("/api/health").get_json()["data"]["jobs"] == "ok", timeout=15, interval=0.5)


def test_the_periodic_jobs_run_on_a_forking_worker_and_log_there(make_app, jobs_settings, celery_worker):
    from app.jobs import PERIODIC, celery_of

    app = make_app(jobs_settings)
    worker = celery_worker(jobs_settings, app, pool="prefork")  # a forked child logs through its own writer thread
    with app.app_context():
        schedule = celery_of(app).conf.beat_schedule
        assert {entry["task"] for entry in schedule.values()} == set(PERIODIC)
        for name in PERIODIC:
            celery_of(app).send_task(name, args=(None, [], {}))
    done = ("pruned 0 expired session-index entries", "pruned 0 old security events", "pruned files: ")
    wait_until(lambda: all(line in worker.log() for line in done), timeout=20)
    assert "Traceback" not in worker.log()


def test_a_worker_follows_the_sentinels_master_through_a_failover(make_app, test_settings, sentinel_group,
                                                                   celery_worker, smtp):
    port, inbox = smtp
    settings = deep_merge(test_settings, {
        "redis": {"url": sentinel_group.url},
        "jobs": {"backend": "celery", "visibility_timeout": 3, "retry_backoff_max": 2},
        "mail": {"server": "127.0.0.1", "port": port, "suppress": False},
        "auth": {"reset_mails_per_address": 10},
        "sms": {"resend_after": 0},  # a second reset mail at once
    })
    app = make_app(settings)
    with app.app_context():
        create_user("+8613800138000", "correct horse battery", "小明", "me@example.com")
        db.session.remove()
    worker = celery_worker(settings, app)
    client = app.test_client()
    assert client.post("/api/auth/password/forgot", json={"email": "me@example.com"}).status_code == 200
    wait_until(lambda: len(inbox.messages) == 1, timeout=20)

    old_master = sentinel_group.master_address()
    sentinel_group.kill(old_master[1])
    wait_until(lambda: sentinel_group.master_address() != old_master, timeout=20, interval=0.2)
    # the API's next enqueue and the worker's consumer both find the new master, without a restart
    wait_until(lambda: client.post("/api/auth/password/forgot", json={"email": "me@example.com"}).status_code == 200,
               timeout=15, interval=0.5)
    wait_until(lambda: len(inbox.messages) >= 2, timeout=60, interval=0.2)
    assert worker.process.poll() is None


def test_a_mail_waiting_in_the_queue_cannot_be_read_there(make_app, jobs_settings):
    """The reset code in a letter is sealed under SECRET_KEY while it waits in Redis for a worker."""
    app = make_app(jobs_settings)
    with app.app_context():
        create_user("+8613800138000", "correct horse battery", "小明", "me@example.com")
        db.session.remove()
    assert app.test_client().post("/api/auth/password/forgot", json={"email": "me@example.com"}).status_code == 200
    prefix = jobs_settings["redis"]["prefix"]
    [queued] = redis.Redis.from_url(jobs_settings["redis"]["url"]).lrange(f"{prefix}{prefix}jobs", 0, -1)
    assert b"app.services.mail.deliver" in queued
    assert b"me@example.com" not in queued and b"reset" not in queued.lower()
