"""The uploads clean-up on the local backend: `file_cleanup.prune_files()` and `python manage.py prune-files` delete
stored bytes that no row names (only past the grace period) and rows whose bytes are gone. Files are uploaded
through the API; the bytes or rows are then removed behind its back."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from app.config import project_path, settings_of
from app.extensions import db
from app.models import File
from app.services.file_cleanup import prune_files
from app.services.storage import LocalStorage
from tests.fixtures.accounts import bearer, login
from tests.support import run_manage

OWNER = "+8613800138000"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
HOUR = 3600


@pytest.fixture
def token(client, make_user):
    make_user(OWNER)
    return login(client, OWNER)["token"]


def upload(client, token) -> int:
    response = client.post("/api/files/", data={"file": (io.BytesIO(PNG), "p.png")}, headers=bearer(token),
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["data"]["id"])


def bytes_of(app, file_id: int) -> Path:
    with app.app_context():
        return LocalStorage().path(db.session.get(File, file_id).key)


def stray(app, key: str, age: float = 0.0, where: Path | None = None) -> Path:
    """Bytes written straight to the upload area, as a crashed upload leaves them, ``age`` seconds old."""
    with app.app_context():
        path = where / key if where else LocalStorage().path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def drop_row(app, file_id: int) -> None:
    with app.app_context():
        db.session.delete(db.session.get(File, file_id))
        db.session.commit()


def status(client, token, file_id: int) -> int:
    return int(client.get(f"/api/files/{file_id}", headers=bearer(token)).status_code)


def test_old_bytes_without_a_row_go_and_young_ones_stay(app, client, token):
    kept = upload(client, token)
    rowless = upload(client, token)
    rowless_bytes = bytes_of(app, rowless)
    drop_row(app, rowless)
    age(rowless_bytes, 2 * HOUR)
    crashed = stray(app, "ab" * 16 + ".png", age=2 * HOUR)
    in_progress = stray(app, "cd" * 16 + ".png", age=60)  # an upload whose row is not committed yet

    with app.app_context():
        assert prune_files(grace_seconds=HOUR, batch=2) == {"orphan_objects": 2, "rows_without_bytes": 0}
    assert not rowless_bytes.exists() and not crashed.exists()
    assert in_progress.exists() and bytes_of(app, kept).exists()
    assert client.get(f"/api/files/{kept}/content", headers=bearer(token)).data == PNG


def test_the_grace_period_defaults_to_files_orphan_grace(make_app, accounts_settings):
    app = make_app({**accounts_settings, "files": {"orphan_grace": 600}})
    young, old = stray(app, "ab" * 16, age=300), stray(app, "cd" * 16, age=900)
    with app.app_context():
        assert prune_files() == {"orphan_objects": 1, "rows_without_bytes": 0}
    assert young.exists() and not old.exists()


def test_only_what_looks_like_an_upload_key_in_its_place_is_taken(app):
    root = project_path(settings_of(app).files.local_dir)
    others = [stray(app, "notes.txt", age=2 * HOUR, where=root),
              stray(app, "ef" * 16 + ".png", age=2 * HOUR, where=root / "zz"),  # not where its key would be
              stray(app, ".upload-x1y2", age=2 * HOUR, where=root / "ab" / "ab")]
    with app.app_context():
        assert prune_files(grace_seconds=0) == {"orphan_objects": 0, "rows_without_bytes": 0}
    assert all(path.exists() for path in others)


def test_a_row_whose_bytes_are_gone_is_deleted_and_logged(app, client, token, caplog):
    kept, lost = upload(client, token), upload(client, token)
    bytes_of(app, lost).unlink()
    with app.app_context(), caplog.at_level(logging.WARNING, logger="app.services.file_cleanup"):
        assert prune_files(batch=1) == {"orphan_objects": 0, "rows_without_bytes": 1}
    assert (status(client, token, kept), status(client, token, lost)) == (200, 404)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "app.services.file_cleanup"]
    assert len(warned) == 1 and f"file {lost} " in warned[0].getMessage()


def test_rows_are_left_alone_when_the_upload_area_is_missing(app, client, token):
    """A process pointed at another directory must not take every file for lost."""
    file_id = upload(client, token)
    path = bytes_of(app, file_id)
    root = project_path(settings_of(app).files.local_dir)
    moved = root.with_name("moved-uploads")
    root.rename(moved)
    with app.app_context():
        assert prune_files() == {"orphan_objects": 0, "rows_without_bytes": 0}
    moved.rename(root)
    assert path.exists() and status(client, token, file_id) == 200


def test_a_dry_run_counts_and_deletes_nothing(app, client, token):
    lost = upload(client, token)
    bytes_of(app, lost).unlink()
    crashed = stray(app, "ab" * 16 + ".gif", age=2 * HOUR)
    with app.app_context():
        assert prune_files(dry_run=True) == {"orphan_objects": 1, "rows_without_bytes": 1}
    assert crashed.exists() and status(client, token, lost) == 200


def manage(test_settings: dict, *args: str) -> subprocess.CompletedProcess:
    return run_manage(*args, env={"DATABASE_URL": test_settings["database"]["url"],
                                  "APP_FILES__LOCAL_DIR": test_settings["files"]["local_dir"],
                                  "APP_LOG__FILE": test_settings["log"]["file"]})


def test_the_command_prints_counts_and_honours_grace_and_dry_run(app, client, token, test_settings):
    lost = upload(client, token)
    bytes_of(app, lost).unlink()
    crashed = stray(app, "ab" * 16 + ".png", age=120)

    dry = manage(test_settings, "prune-files", "--dry-run", "--grace", "60")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["1 stored object(s) without a row would be deleted",
                                       "1 file row(s) without bytes would be deleted"]
    assert crashed.exists() and status(client, token, lost) == 200

    default_grace = manage(test_settings, "prune-files")  # an hour: the stray bytes are younger
    assert default_grace.stdout.splitlines() == ["0 stored object(s) without a row deleted",
                                                 "1 file row(s) without bytes deleted"], default_grace.stderr
    assert crashed.exists() and status(client, token, lost) == 404

    done = manage(test_settings, "prune-files", "--grace", "60")
    assert done.stdout.splitlines()[0] == "1 stored object(s) without a row deleted"
    assert not crashed.exists()
    assert manage(test_settings, "prune-files", "--grace", "-1").returncode == 2
