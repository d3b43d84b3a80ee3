"""redis_store.run_script: Lua in one round trip on the thread's own connection, which survives what a pooled
connection survives (Redis forgetting its scripts, a dropped connection, a fork)."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
import redis

from app.extensions import redis_store

ECHO = "return {KEYS[1], ARGV[1]}"


@pytest.fixture
def app(make_app, real_redis_settings):
    return make_app(real_redis_settings)


def test_a_script_runs_by_sha_and_its_source_is_sent_when_redis_lacks_it(app):
    source = f"-- {uuid.uuid4()}\n{ECHO}"  # new to this Redis, as every script is after a restart
    sha = hashlib.sha1(source.encode()).hexdigest()
    with app.app_context():
        assert redis_store.client.script_exists(sha) == [False]
        assert redis_store.run_script(source, keys=["k"], args=["v"]) == ["k", "v"]
        assert redis_store.client.script_exists(sha) == [True]
        assert redis_store.run_script(source, keys=["k2"], args=[2]) == ["k2", "2"]


def test_a_dropped_connection_is_reopened_without_an_error(app, real_redis_url):
    with app.app_context():
        redis_store.run_script(ECHO, keys=["k"], args=["v"])
        own = redis_store._own_connection()
        own.send_command("CLIENT", "ID")
        client_id = own.read_response()
        assert redis.Redis.from_url(real_redis_url).client_kill_filter(_id=client_id) == 1
        assert redis_store.run_script(ECHO, keys=["k"], args=["again"]) == ["k", "again"]
        assert redis_store._own_connection() is own  # the same connection, reconnected


def test_a_forked_child_opens_its_own_connection(app):
    with app.app_context():
        redis_store.run_script(ECHO, keys=["k"], args=["parent"])
        parent_port = redis_store._own_connection()._sock.getsockname()[1]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: answer over the pipe, then leave without running pytest's exit handlers
            try:
                answer = redis_store.run_script(ECHO, keys=["k"], args=["child"])
                port = redis_store._own_connection()._sock.getsockname()[1]
                os.write(write, f"{answer[1]} {port != parent_port}".encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        assert os.read(read, 100).decode() == "child True"
        assert redis_store.run_script(ECHO, keys=["k"], args=["parent"]) == ["k", "parent"]
