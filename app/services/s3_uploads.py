"""S3 direct uploads: a presigned POST for one file, then its completion, checked against what was issued.

    files:s3_pending:<user id>:<key>        JSON: filename, content_type, size, expires_at   TTL s3.upload_ttl + GRACE
    files:s3_pending_of:<user id>           ZSET of that user's pending keys, scored by when their record ends
    files:s3_completing:<user id>:<key>     a completion in progress (LOCK_TTL)

The form writes ``<s3.prefix>incoming/u<user id>/<32 hex>.<ext>``; completing copies that object (server side, our
headers only) to ``<s3.prefix>u<user id>/<32 hex>.<ext>``, which no form names, checks the copy (so a form posted
again meanwhile cannot slip past the check), records that key and deletes the incoming one. So a form re-posted
after its completion changes nothing that is served, and a public bucket need only publish the final keys. The
pending record is keyed by the user it was issued to, so no one else can complete it; one completion at a time (a
second meanwhile is 409); the record stays until the file is recorded, so a 503 (store or database) can be retried;
a key already recorded is answered before anything is copied. An object that fails the check (larger than issued,
another type than issued or than its first bytes show) is deleted, its copy and its record with it.
At most ``s3.max_pending`` per user.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import re
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.config import configs
from app.errors import (
    OUTAGES,
    Conflict,
    InvalidField,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
)
from app.extensions import db, redis_store
from app.i18n import _
from app.models import File, User
from app.services.files import HEAD, check_type, clean_filename, new_key
from app.services.s3_storage import ObjectInfo, S3Storage

GRACE = 900  # seconds a pending upload outlives its form: an upload begun just before the expiry still completes
LOCK_TTL = 60  # seconds a completion may hold its key (its few store calls are bounded by the S3 timeouts)
# Keeps at most s3.max_pending records per user: ARGV now, max, record's end, record, TTL. Returns -1 when the
# record is written, else the seconds until the user's oldest record ends.
ISSUE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) - tonumber(ARGV[1]))
end
redis.call('ZADD', KEYS[1], ARGV[3], KEYS[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
return -1
"""


def _pending(user_id: int, key: str) -> str:
    return redis_store.key("files", "s3_pending", str(user_id), key)


def _pending_of(user_id: int) -> str:
    return redis_store.key("files", "s3_pending_of", str(user_id))


def _completing(user_id: int, key: str) -> str:
    return redis_store.key("files", "s3_completing", str(user_id), key)


def incoming_prefix() -> str:
    return configs.s3.prefix + "incoming/"


def final_key(user_id: int, key: str) -> str | None:
    """Where the completed file of the incoming ``key`` lives; None for a key that is not an incoming key of
    ``user_id``."""
    shape = re.escape(incoming_prefix()) + rf"(u{user_id}/[0-9a-f]{{32}}(?:\.[a-z]{{3,4}})?)"
    found = re.fullmatch(shape, key)
    return configs.s3.prefix + found.group(1) if found else None


def issue_upload_url(user: User, filename: str, content_type: str, size: int) -> dict[str, Any]:
    """A presigned POST for one file of ``content_type`` and at most ``size`` bytes; 413 / 415 up front, 429 past
    ``s3.max_pending`` uploads of this user not yet completed."""
    storage = S3Storage()
    storage.client()  # 501 before anything else when S3 is not configured
    files = configs.files
    name = clean_filename(filename)
    if size > files.max_size:
        raise PayloadTooLarge(_("The file is larger than %(size)s bytes.", size=files.max_size))
    if content_type not in files.allowed_types:
        raise UnsupportedMediaType(_("Allowed types: %(types)s.", types=", ".join(files.allowed_types)))
    named = mimetypes.guess_type(name)[0]
    if named is not None and named != content_type:
        raise UnsupportedMediaType(_("The name says %(named)s but the type given is %(given)s.", named=named,
                                             given=content_type))
    key = f"{incoming_prefix()}u{user.id}/{new_key(content_type)}"
    form = storage.presigned_post(key, content_type, size)
    now = int(time.time())
    expires_at = now + configs.s3.upload_ttl
    record = {"filename": name, "content_type": content_type, "size": size, "expires_at": expires_at}
    wait = redis_store.run_script(ISSUE, [_pending_of(user.id), _pending(user.id, key)],
                                  [now, configs.s3.max_pending, expires_at + GRACE, json.dumps(record),
                                   configs.s3.upload_ttl + GRACE])
    if int(wait) >= 0:
        raise TooManyRequests(_("You have %(count)s uploads not yet completed; complete them or wait until their "
                                "forms expire.", count=configs.s3.max_pending), retry_after=int(wait))
    return {"key": key, "url": form["url"], "fields": form["fields"], "expires_at": expires_at}


def complete_upload(user: User, key: str) -> File:
    """Check the object the caller uploaded under ``key``, move it to its final key and record it. Completing again
    answers the same file; a key not issued to the caller (or expired) is 400 on ``key``, alike for every reason;
    409 while another request completes it."""
    storage = S3Storage()
    storage.client()
    final = final_key(user.id, key)
    if final is None:
        raise InvalidField(_("No upload of yours is pending under this key."), field="key")
    lock = _completing(user.id, key)
    if not redis_store.set(lock, "1", nx=True, ex=LOCK_TTL):
        raise Conflict(_("This upload is being completed by another request; try again in a moment."))
    try:
        return _complete(storage, user, key, final)
    finally:
        with contextlib.suppress(*OUTAGES):
            redis_store.delete(lock)


def _complete(storage: S3Storage, user: User, key: str, final: str) -> File:
    existing = _recorded(user.id, final)
    if existing is not None:  # completed before (its answer may have been lost): never copied over or deleted
        return existing
    claimed = redis_store.get(_pending(user.id, key))
    if claimed is None:
        raise InvalidField(_("No upload of yours is pending under this key."), field="key")
    pending = json.loads(claimed)
    uploaded = storage.head(key)
    if uploaded is None:
        raise NotUploaded(_("Nothing has been uploaded under this key yet."), field="key")
    # Copied first, then checked: the form may still overwrite the incoming object, never the final one, so what
    # is checked (and its size recorded) is what is served.
    storage.copy(key, final, pending["content_type"])
    try:
        found = _check(storage, final, pending, uploaded.content_type)
    except BaseException as exc:
        storage.delete(final)  # never left unchecked (a 503 too: the retry copies again)
        if isinstance(exc, (PayloadTooLarge, UnsupportedMediaType)):
            storage.delete(key)
            _forget(user.id, key)  # its object is deleted: it can never complete
        raise
    record = File(owner_id=user.id, key=final, filename=pending["filename"], size=found.size,
                  content_type=found.content_type, sha256="", backend="s3")
    try:
        db.session.add(record)
        db.session.commit()
    except BaseException as exc:
        with contextlib.suppress(*OUTAGES):
            db.session.rollback()
        if isinstance(exc, IntegrityError):  # recorded meanwhile by another completion: its bytes stay
            existing = _recorded(user.id, final)
            if existing is not None:
                return existing
            raise Conflict(_("This upload is being completed by another request; try again in a moment.")) from None
        if not getattr(exc, "connection_invalidated", False):  # as store_upload: a row that may exist keeps it
            storage.delete(final)
        raise  # the pending record and the incoming object stay: a retry completes
    with contextlib.suppress(*OUTAGES):  # recorded: what is left is prune-files' (the record expires)
        _forget(user.id, key)
    storage.delete(key)
    return record


def _recorded(user_id: int, final: str) -> File | None:
    return db.session.scalar(select(File).where(File.key == final, File.owner_id == user_id))


def _forget(user_id: int, key: str) -> None:
    redis_store.delete(_pending(user_id, key))
    redis_store.zrem(_pending_of(user_id), _pending(user_id, key))


class NotUploaded(InvalidField, LookupError):
    """The pending upload's object is not in the bucket (yet)."""


def _check(storage: S3Storage, final: str, pending: dict[str, Any], declared: str) -> ObjectInfo:
    """The copied object at ``final``, once it has the size and type issued, its first bytes agreeing (and the type
    the upload ``declared``); otherwise 413 or 415."""
    found = storage.head(final)
    if found is None:
        raise NotUploaded(_("Nothing has been uploaded under this key yet."), field="key")
    if found.size > pending["size"] or found.size > configs.files.max_size:
        raise PayloadTooLarge(_("The file is larger than the %(size)s bytes it was issued for.", size=pending["size"]))
    head = b""
    if found.size:
        answer = storage.read(final, (0, HEAD - 1))
        if answer is None:  # gone since the HEAD: as if never uploaded
            raise NotUploaded(_("Nothing has been uploaded under this key yet."), field="key")
        with contextlib.closing(answer["Body"]) as body:
            head = body.read()
    sniffed = check_type(head, pending["filename"])
    if pending["content_type"] != sniffed or declared != sniffed:
        raise UnsupportedMediaType(_("The file is %(found)s stored as %(declared)s, not the %(issued)s it was issued "
                                     "for.", found=sniffed, declared=declared or _("no type"),
                                     issued=pending["content_type"]))
    return ObjectInfo(found.size, sniffed)
