"""S3 direct uploads: a presigned POST for one file, then its completion, checked against what was issued.

    files:s3_pending:<user id>:<key>   JSON: filename, content_type, size, expires_at   TTL s3.upload_ttl + GRACE

The pending record is keyed by the user it was issued to, so no one else can complete it; completing claims it
(GETDEL: one request wins), and puts it back when the object is not there yet or the store cannot be asked. An
object that fails the check (larger than issued, another type than issued or than its first bytes show) is
deleted. Keys look like ``u<user id>/<32 hex>.<ext>``, which prune-files knows as upload keys.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import time
from typing import Any

from sqlalchemy import select

from app.config import configs
from app.errors import (
    OUTAGES,
    InvalidField,
    PayloadTooLarge,
    ServiceUnavailable,
    StorageNotConfigured,
    UnsupportedMediaType,
)
from app.extensions import db, redis_store
from app.models import File, User
from app.services.files import HEAD, check_type, clean_filename, new_key
from app.services.s3_storage import ObjectInfo, S3Storage

GRACE = 900  # seconds a pending upload outlives its form: an upload begun just before the expiry still completes


def _pending(user_id: int, key: str) -> str:
    return redis_store.key("files", "s3_pending", str(user_id), key)


def issue_upload_url(user: User, filename: str, content_type: str, size: int) -> dict[str, Any]:
    """A presigned POST for one file of ``content_type`` and at most ``size`` bytes; 413 / 415 up front."""
    storage = S3Storage()
    storage.client()  # 501 before anything else when S3 is not configured
    files = configs.files
    name = clean_filename(filename)
    if size > files.max_size:
        raise PayloadTooLarge(f"The file is larger than {files.max_size} bytes.")
    if content_type not in files.allowed_types:
        raise UnsupportedMediaType(f"Allowed types: {', '.join(files.allowed_types)}.")
    named = mimetypes.guess_type(name)[0]
    if named is not None and named != content_type:
        raise UnsupportedMediaType(f"The name says {named} but the type given is {content_type}.")
    key = f"u{user.id}/{new_key(content_type)}"
    form = storage.presigned_post(key, content_type, size)
    expires_at = int(time.time()) + configs.s3.upload_ttl
    record = {"filename": name, "content_type": content_type, "size": size, "expires_at": expires_at}
    redis_store.set(_pending(user.id, key), json.dumps(record), ex=configs.s3.upload_ttl + GRACE)
    return {"key": key, "url": form["url"], "fields": form["fields"], "expires_at": expires_at}


def complete_upload(user: User, key: str) -> File:
    """Check the object the caller uploaded under ``key`` and record it. Completing again answers the same file;
    a key not issued to the caller (or expired) is 400 on ``key``, alike for every reason."""
    storage = S3Storage()
    storage.client()
    claimed = redis_store.getdel(_pending(user.id, key))
    if claimed is None:
        existing = db.session.scalar(select(File).where(File.key == key, File.owner_id == user.id))
        if existing is not None:
            return existing
        raise InvalidField("No upload of yours is pending under this key.", field="key")
    pending = json.loads(claimed)
    try:
        found = _check(storage, key, pending)
    except (ServiceUnavailable, StorageNotConfigured, LookupError):
        redis_store.set(_pending(user.id, key), claimed, exat=pending["expires_at"] + GRACE)
        raise
    record = File(owner_id=user.id, key=key, filename=pending["filename"], size=found.size,
                  content_type=found.content_type, sha256="", backend="s3")
    try:
        db.session.add(record)
        db.session.commit()
    except BaseException as exc:
        with contextlib.suppress(*OUTAGES):
            db.session.rollback()
        if not getattr(exc, "connection_invalidated", False):  # as store_upload: a row that may exist keeps them
            storage.delete(key)
        raise
    return record


class NotUploaded(InvalidField, LookupError):
    """The pending upload's object is not in the bucket (yet)."""


def _check(storage: S3Storage, key: str, pending: dict[str, Any]) -> ObjectInfo:
    """The object, once it is in the bucket with the size and type issued (its first bytes agreeing); otherwise
    it is deleted and 413 or 415 raised."""
    found = storage.head(key)
    if found is None:
        raise NotUploaded("Nothing has been uploaded under this key yet.", field="key")
    try:
        if found.size > pending["size"] or found.size > configs.files.max_size:
            raise PayloadTooLarge(f"The file is larger than the {pending['size']} bytes it was issued for.")
        body = storage.read(key, (0, HEAD - 1)) if found.size else None
        sniffed = check_type(body.read() if body is not None else b"", pending["filename"])
        if pending["content_type"] != sniffed or found.content_type != sniffed:
            raise UnsupportedMediaType(f"The file is {sniffed} stored as {found.content_type or 'no type'}, not "
                                       f"the {pending['content_type']} it was issued for.")
    except (PayloadTooLarge, UnsupportedMediaType):
        storage.delete(key)
        raise
    return ObjectInfo(found.size, sniffed)
