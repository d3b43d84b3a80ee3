"""The uploads clean-up on the s3 backend, against moto_server: `file_cleanup.prune_files()` lists the bucket under
s3.prefix and deletes upload-shaped objects no row names (past the grace period; a direct upload's incoming object
only once its pending record has ended), and rows whose object is gone; nothing else in a bucket shared with other
uses is touched, and a bucket that is not there stops it before any row goes."""

from __future__ import annotations

import io
import subprocess

import pytest

from app.extensions import db
from app.models import File
from app.services.file_cleanup import prune_files
from tests.fixtures.accounts import bearer, login
from tests.support import deep_merge, run_manage

OWNER = "+8613800138000"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def app(make_app, accounts_settings, s3_bucket):
    return make_app(deep_merge(accounts_settings, {"files": {"backend": "s3"}, "s3": s3_bucket.settings()}))


@pytest.fixture
def token(client, make_user):
    make_user(OWNER)
    return login(client, OWNER)["token"]


def upload(client, token) -> int:
    response = client.post("/api/files/", data={"file": (io.BytesIO(PNG), "p.png")}, headers=bearer(token),
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["data"]["id"])


def key_of(app, file_id: int) -> str:
    with app.app_context():
        return db.session.get(File, file_id).key


def drop_row(app, file_id: int) -> None:
    with app.app_context():
        db.session.delete(db.session.get(File, file_id))
        db.session.commit()


def put(bucket, key: str) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=PNG)


def test_rowless_upload_objects_go_and_everything_else_stays(app, client, token, s3_bucket):
    kept, rowless = upload(client, token), upload(client, token)
    rowless_key = key_of(app, rowless)
    assert rowless_key.startswith("uploads/")
    drop_row(app, rowless)
    completed = "uploads/u7/" + "ab" * 16 + ".png"  # a completed direct upload whose row is gone
    put(s3_bucket, completed)
    incoming = "uploads/incoming/u7/" + "cd" * 16 + ".png"  # uploaded, not completed yet: its record still lives
    put(s3_bucket, incoming)
    md5 = "971913df1e477c067472b172f13468d4"  # another application's content-addressed names, same bucket
    others = ["backups/db.sql", f"{md5}.jpg", f"u7/{md5}.webp", "uploads/notes.txt", "uploads/" + "ab" * 16 + ".bak1"]
    for key in others:
        put(s3_bucket, key)
    with app.app_context():
        assert prune_files(grace_seconds=3600) == {"orphan_objects": 0, "rows_without_bytes": 0}  # all young
        assert prune_files(grace_seconds=0, batch=1) == {"orphan_objects": 2, "rows_without_bytes": 0}
    assert sorted(s3_bucket.object_keys()) == sorted([key_of(app, kept), incoming, *others])
    assert rowless_key not in s3_bucket.object_keys()
    assert client.get(f"/api/files/{kept}", headers=bearer(token)).status_code == 200


def test_a_row_whose_object_is_gone_is_deleted(app, client, token, s3_bucket):
    kept, lost = upload(client, token), upload(client, token)
    s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=key_of(app, lost))
    with app.app_context():
        assert prune_files() == {"orphan_objects": 0, "rows_without_bytes": 1}
    assert client.get(f"/api/files/{lost}", headers=bearer(token)).status_code == 404
    assert client.get(f"/api/files/{kept}", headers=bearer(token)).status_code == 200


def test_the_command_fails_and_deletes_no_row_while_the_store_is_down(
        app, client, token, s3_bucket, test_settings, start_s3_server):
    server = start_s3_server()
    server.client().create_bucket(Bucket=s3_bucket.name)
    env = {"DATABASE_URL": test_settings["database"]["url"], "APP_LOG__FILE": test_settings["log"]["file"],
           "APP_FILES__BACKEND": "s3", **{f"APP_S3__{k.upper()}": str(v) for k, v in
                                          s3_bucket.settings(endpoint_url=server.url).items()}}
    with app.app_context():
        db.session.add(File(owner_id=1, key="cd" * 16 + ".png", filename="p.png", size=1, content_type="image/png",
                            sha256="", backend="s3"))
        db.session.commit()
    assert run_manage("prune-files", env=env).stdout.splitlines()[1] == "1 file row(s) without bytes deleted"
    server.stop()
    upload_id = upload(client, token)
    result: subprocess.CompletedProcess = run_manage("prune-files", env=env)
    assert result.returncode == 1 and "Error: Cloud storage did not answer." in result.stderr.splitlines()
    assert client.get(f"/api/files/{upload_id}", headers=bearer(token)).status_code == 200


def manage_env(test_settings, s3_bucket, **s3) -> dict[str, str]:
    return {"DATABASE_URL": test_settings["database"]["url"], "APP_LOG__FILE": test_settings["log"]["file"],
            **{f"APP_S3__{k.upper()}": str(v) for k, v in s3_bucket.settings(**s3).items()}}


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_a_bucket_that_is_not_there_stops_the_command_and_no_row_goes(
        app, client, token, s3_bucket, test_settings, backend):
    file_ids = [upload(client, token) for _ in range(3)]
    env = {**manage_env(test_settings, s3_bucket, bucket="no-such-bucket-typo"), "APP_FILES__BACKEND": backend}
    for args in (["--dry-run"], []):
        result = run_manage("prune-files", *args, env=env)
        assert result.returncode == 1, result.stdout
        assert "Bucket no-such-bucket-typo cannot be used" in result.stderr and "deleted" not in result.stdout
    for file_id in file_ids:
        assert client.get(f"/api/files/{file_id}", headers=bearer(token)).status_code == 200


def test_with_files_on_local_disk_the_configured_bucket_is_pruned_too(app, client, token, s3_bucket, test_settings):
    orphan = "uploads/u1/" + "ef" * 16 + ".png"  # a completed direct upload whose row was deleted
    put(s3_bucket, orphan)
    env = {**manage_env(test_settings, s3_bucket), "APP_FILES__BACKEND": "local"}
    result = run_manage("prune-files", "--grace", "0", env=env)
    assert result.stdout.splitlines()[0] == "1 stored object(s) without a row deleted", result.stderr
    assert orphan not in s3_bucket.object_keys()


def test_a_store_that_lacks_most_rows_bytes_deletes_nothing_unless_forced(
        app, client, token, s3_bucket, test_settings, start_s3_server):
    """The right bucket name on the wrong store (an empty bucket that exists): 11 of 11 rows look lost."""
    file_ids = [upload(client, token) for _ in range(11)]
    other = start_s3_server()
    other.client().create_bucket(Bucket=s3_bucket.name)
    env = {**manage_env(test_settings, s3_bucket, endpoint_url=other.url), "APP_FILES__BACKEND": "s3"}
    for args in (["--dry-run"], []):
        result = run_manage("prune-files", *args, env=env)
        assert result.returncode == 1, result.stdout
        assert (f"Error: 11 of 11 S3 file rows have no bytes in bucket {s3_bucket.name} at {other.url}: nothing "
                "deleted.") in result.stderr and "--force" in result.stderr and "deleted" not in result.stdout
    for file_id in file_ids:
        assert client.get(f"/api/files/{file_id}", headers=bearer(token)).status_code == 200
    result = run_manage("prune-files", "--force", env=env)
    assert result.stdout.splitlines()[1] == "11 file row(s) without bytes deleted", result.stderr
    assert client.get(f"/api/files/{file_ids[0]}", headers=bearer(token)).status_code == 404
