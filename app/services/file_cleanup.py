"""Periodic clean-up of uploads: stored objects that no ``files`` row names, and rows whose bytes are gone.

An upload writes its bytes before its row commits (app.services.files.store_upload; a Qiniu direct upload is
recorded by the callback after the bytes landed), so bytes without a row are only taken once older than
``files.orphan_grace``; a row without bytes is never an upload in progress, and is deleted at any age (its file
can no longer be downloaded). Deleting a file removes its row before its bytes, so neither step races it.

On S3 only keys under ``s3.prefix`` are listed or deleted: ``<prefix><key>`` and ``<prefix>u<id>/<key>`` like the
rows', and ``<prefix>incoming/u<id>/<key>`` (a direct upload's form target, never a row's), an orphan once older
than its pending record can live (``s3.upload_ttl`` + 900 s). The bucket is listed whenever ``s3.bucket`` is set,
whatever ``files.backend`` (direct uploads go there regardless). A bucket that is missing or does not answer
stops the command before anything is deleted: a missing object is only believed in a bucket that exists. So does
a bucket that exists but lacks the bytes of more than 10 S3 rows and of more than 20 % of them (the wrong store or
endpoint, most likely), unless forced.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from sqlalchemy import delete, func, select

from app.config import configs
from app.errors import ServiceUnavailable, StorageNotConfigured
from app.extensions import db
from app.i18n import _
from app.models import File
from app.services.s3_uploads import GRACE as PENDING_GRACE
from app.services.storage import S3Storage, storage_for

log = logging.getLogger(__name__)

BATCH = 500  # keys looked up, or rows checked, per query
SUSPECT_ROWS, SUSPECT_SHARE = 10, 0.2  # more S3 rows than both without bytes: the wrong store, not lost files
# The keys uploads are given (app.services.files.new_key, and "u<user id>/" before it for Qiniu direct uploads):
# nothing else in the upload area, or in a bucket shared with other uses, is ever taken for an orphan.
KEY_SHAPE = re.compile(r"(?:u[1-9][0-9]{0,17}/)?[0-9a-f]{32}(?:\.[a-z]{3,4})?")
INCOMING_SHAPE = re.compile(r"incoming/u[1-9][0-9]{0,17}/[0-9a-f]{32}(?:\.[a-z]{3,4})?")

T = TypeVar("T")


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def prune_files(grace_seconds: int | None = None, dry_run: bool = False, batch: int = BATCH,
                force: bool = False) -> dict[str, int]:
    """Delete the configured backend's objects that no row names and that are older than ``grace_seconds``
    (default ``files.orphan_grace``), and the rows (of any backend) whose bytes are gone, each logged at WARNING
    (rows of a backend that cannot be asked are left alone); with ``dry_run`` only count them. Streams the
    listing and the rows ``batch`` at a time. Unless ``force``, nothing is deleted (503) when more than
    SUSPECT_ROWS S3 rows and more than SUSPECT_SHARE of them seem gone: a wrong bucket or endpoint that exists.
    Returns ``{"orphan_objects": n, "rows_without_bytes": m}``."""
    grace = configs.files.orphan_grace if grace_seconds is None else grace_seconds
    if configs.s3.bucket:
        S3Storage().verify_bucket()
    gone = _rows_without_bytes(batch)
    if not force:
        _refuse_mass_loss(gone)
    backends = [configs.files.backend] + (["s3"] if configs.s3.bucket and configs.files.backend != "s3" else [])
    orphans = sum(_prune_orphans(backend, time.time() - grace, dry_run, batch) for backend in backends)
    return {"orphan_objects": orphans, "rows_without_bytes": _delete_rows(gone, dry_run, batch)}


def _refuse_mass_loss(gone: dict[str, list[int]]) -> None:
    lost = len(gone.get("s3", []))
    if lost <= SUSPECT_ROWS:
        return
    total = int(db.session.scalar(select(func.count(File.id)).where(File.backend == "s3")) or 0)
    db.session.rollback()
    if lost > SUSPECT_SHARE * total:
        raise ServiceUnavailable(_("%(lost)s of %(total)s S3 file rows have no bytes in bucket %(bucket)s at "
                                   "%(endpoint)s: nothing deleted. Check s3.bucket and s3.endpoint_url; if they are "
                                   "lost, run again with --force.", lost=lost, total=total, bucket=configs.s3.bucket,
                                   endpoint=configs.s3.endpoint_url or "AWS"))


def _orphan_shaped(backend: str, key: str, modified_at: float, cutoff: float) -> bool:
    """Whether ``key`` is one of ours, old enough to be taken for an orphan once no row names it."""
    if backend != "s3":
        return modified_at < cutoff and KEY_SHAPE.fullmatch(key) is not None
    prefix = configs.s3.prefix
    if not key.startswith(prefix):
        return False
    own = key[len(prefix):]
    if INCOMING_SHAPE.fullmatch(own):  # a form's target: spared while its pending record may still complete it
        return modified_at < min(cutoff, time.time() - configs.s3.upload_ttl - PENDING_GRACE)
    return modified_at < cutoff and KEY_SHAPE.fullmatch(own) is not None


def _prune_orphans(backend: str, cutoff: float, dry_run: bool, batch: int) -> int:
    storage = storage_for(backend)
    candidates = (item.key for item in storage.stored()
                  if _orphan_shaped(backend, item.key, item.modified_at, cutoff))
    removed = 0
    for keys in _batches(candidates, batch):
        named = set(db.session.scalars(select(File.key).where(File.key.in_(keys))))
        db.session.rollback()  # no transaction stays open while the listing goes on
        for key in keys:
            if key not in named:
                log.info("stored object %s (%s) has no files row%s", key, storage.name,
                         "" if dry_run else ": deleted")
                if not dry_run:
                    storage.delete(key)
                removed += 1
    return removed


def _rows_without_bytes(batch: int) -> dict[str, list[int]]:
    """The ids of the rows whose backend says their bytes are gone, by backend; by id, one batch per query."""
    last_id, gone, unreachable = 0, dict[str, list[int]](), set[str]()
    while True:
        rows = db.session.execute(select(File.id, File.key, File.backend, File.owner_id)
                                  .where(File.id > last_id)
                                  .order_by(File.id).limit(batch)).all()
        db.session.rollback()
        if not rows:
            return gone
        last_id = rows[-1].id
        for row in rows:
            if row.backend in unreachable:
                continue
            try:
                if storage_for(row.backend).exists(row.key):
                    continue
            except StorageNotConfigured as exc:
                log.error("files on %s are not checked: %s", row.backend, exc.message)
                unreachable.add(row.backend)
                continue
            log.warning("file %s of user %s: its bytes (%s on %s) are gone", row.id, row.owner_id, row.key,
                        row.backend)
            gone.setdefault(row.backend, []).append(row.id)


def _delete_rows(gone: dict[str, list[int]], dry_run: bool, batch: int) -> int:
    ids = [row_id for backend_ids in gone.values() for row_id in backend_ids]
    if dry_run:
        return len(ids)
    removed = 0
    for chunk in _batches(ids, batch):
        result = db.session.execute(delete(File).where(File.id.in_(chunk)))
        db.session.commit()
        removed += int(getattr(result, "rowcount", 0) or 0)  # a file deleted meanwhile is not counted
    log.info("%s file row(s) without bytes deleted", removed)
    return removed
