"""Files: upload with type and size checks, metadata, access rules, downloads, deletion, Qiniu direct uploads
(S3 direct uploads: s3_uploads.py)."""

from __future__ import annotations

import codecs
import contextlib
import logging
import mimetypes
import re
import secrets
import time
import unicodedata
from typing import IO, Any
from urllib.parse import parse_qsl

from sqlalchemy import select

from app.config import configs
from app.errors import OUTAGES, Forbidden, InvalidField, NotAuthorized, NotFound, UnsupportedMediaType
from app.extensions import db
from app.i18n import _
from app.models import File, User
from app.services.records import Paging, get_by_id, paginate
from app.services.storage import QiniuStorage, S3Storage, read_limited, storage_for
from app.urls import absolute_url

log = logging.getLogger(__name__)

HEAD = 512  # bytes read to recognise the type
SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
              "application/pdf": ".pdf", "text/plain": ".txt"}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def sniff(head: bytes) -> str | None:
    """The type the first bytes show, or None."""
    for signature, content_type in SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if b"\x00" not in head:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            return "text/plain"
        except UnicodeDecodeError:
            return None
    return None


def clean_filename(raw: str | None) -> str:
    """The client's name for display: last path part, no control characters, at most 255 characters."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("", name).strip().lstrip(".") or "file"
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 254 - len(ext)] + dot + ext) if dot and len(ext) < 16 else name[:255]
    return name


def check_type(head: bytes, filename: str) -> str:
    """The content type, when the bytes and the name agree on an allowed one; 415 otherwise."""
    found = sniff(head)
    allowed = configs.files.allowed_types
    if found is None or found not in allowed:
        raise UnsupportedMediaType(_("Allowed types: %(types)s.", types=", ".join(allowed)))
    named = mimetypes.guess_type(filename)[0]
    if named is not None and named != found:
        raise UnsupportedMediaType(_("The name says %(named)s but the content is %(found)s.", named=named, found=found))
    return found


def new_key(content_type: str) -> str:
    return secrets.token_hex(16) + EXTENSIONS.get(content_type, "")


def store_upload(owner: User, stream: IO[bytes], filename: str | None) -> File:
    """Check, store and record an upload. On any failure nothing stays: no bytes, no row."""
    name = clean_filename(filename)
    head = stream.read(HEAD)
    content_type = check_type(head, name)
    storage = storage_for()
    key = (configs.s3.prefix if storage.name == "s3" else "") + new_key(content_type)
    written = storage.save(key, read_limited(stream, head, configs.files.max_size), content_type)
    record = File(owner_id=owner.id, key=key, filename=name, size=written.size, content_type=content_type,
                  sha256=written.sha256, backend=storage.name)
    try:
        db.session.add(record)
        db.session.commit()
    except BaseException as exc:
        with contextlib.suppress(*OUTAGES):
            db.session.rollback()
        # A connection lost during the commit leaves it unknown whether the row was written: keep the bytes then (a
        # row without them would be a lost file; bytes without a row go with prune-files after files.orphan_grace).
        if not getattr(exc, "connection_invalidated", False):
            storage.delete(key)
        raise
    return record


def list_files(owner: User, paging: Paging) -> dict[str, Any]:
    query = select(File).where(File.owner_id == owner.id).order_by(File.id.desc())
    return paginate(query, paging)


def get_file(file_id: int, user: User) -> File:
    """The file, for its owner or an admin."""
    record = get_by_id(File, file_id)
    if record is None:
        raise NotFound(_("No such file."))
    if record.owner_id != user.id and not user.is_admin:
        raise Forbidden(_("This file is not yours."))
    return record


def delete_file(record: File) -> None:
    """The row goes first; then the bytes (an orphan byte file is harmless, a row without bytes is not)."""
    key, backend = record.key, record.backend
    db.session.delete(record)
    db.session.commit()
    storage_for(backend).delete(key)


def delete_files_of(owner_id: int) -> None:
    for record in db.session.scalars(select(File).where(File.owner_id == owner_id)).all():
        delete_file(record)


def file_url(record: File) -> str | None:
    """The storage's own URL of the bytes, if it has one."""
    return storage_for(record.backend).url(record.key)


def download_url(record: File) -> str:
    """Where a client downloads the file: the storage's URL, or our content endpoint."""
    return file_url(record) or absolute_url("api.files_file_content", file_id=record.id)


def redirect_url(record: File) -> str | None:
    """Where the content endpoint sends the client instead of serving the bytes itself (None: it serves them):
    Qiniu's URL; for S3 the public URL, or a presigned one naming the file, unless ``s3.proxy_downloads``."""
    if record.backend == "local" or (record.backend == "s3" and configs.s3.proxy_downloads):
        return None
    url = file_url(record)
    if url is None and record.backend == "s3":
        return S3Storage().presigned_get(record.key, record.filename, record.content_type)
    return url or ""


def s3_body(record: File, span: tuple[int, int] | None) -> Any:
    """GetObject's answer for the S3 file, whole or ``span`` (first, last); NotFound (logged) when the object is
    gone."""
    body = S3Storage().read(record.key, span)
    if body is None:
        log.error("file %d has a row but no object (key %s): prune-files removes such rows", record.id, record.key)
        raise NotFound(_("This file's content is missing."))
    return body


def local_path(record: File) -> Any:
    """Where the local backend keeps the file's bytes; NotFound (logged) when they are gone."""
    path = storage_for("local").path(record.key)  # type: ignore[union-attr]
    if not path.is_file():
        log.error("file %d has a row but no bytes (key %s): prune-files removes such rows", record.id, record.key)
        raise NotFound(_("This file's content is missing."))
    return path


# --- Qiniu direct upload ---------------------------------------------------------------------------------

# Form-encoded, so that both of Qiniu's signature schemes (QBox and Qiniu) cover the body. Our fields come first and
# the client's file name last: a name that carries "&user_id=..." only repeats a field, which is refused.
CALLBACK_BODY = "user_id={user_id}&key=$(key)&size=$(fsize)&content_type=$(mimeType)&filename=$(fname)"
CALLBACK_TYPE = "application/x-www-form-urlencoded"
CALLBACK_FIELDS = ("user_id", "key", "size", "content_type")
# A direct upload's key names its user: the token's scope fixes the key, so the client cannot choose another.
QINIU_KEY = re.compile(r"u([1-9][0-9]{0,17})/[0-9a-f]{32}(?:\.[a-z]{3,4})?")


def qiniu_upload_token(user: User, filename: str, content_type: str | None) -> dict[str, Any]:
    """A token for the client to upload one file straight to Qiniu; Qiniu then calls our callback."""
    storage = QiniuStorage()
    auth = storage.auth()
    settings, files = configs.qiniu, configs.files
    name = clean_filename(filename)
    wanted = content_type or mimetypes.guess_type(name)[0] or ""
    if wanted not in files.allowed_types:
        raise UnsupportedMediaType(_("Allowed types: %(types)s.", types=", ".join(files.allowed_types)))
    key = f"u{user.id}/{new_key(wanted)}"
    policy = {
        "fsizeLimit": files.max_size,
        "mimeLimit": ";".join(files.allowed_types),
        "callbackUrl": settings.callback_url or absolute_url("api.files_qiniu_callback"),
        "callbackBody": CALLBACK_BODY.format(user_id=user.id),
        "callbackBodyType": CALLBACK_TYPE,
    }
    token = auth.upload_token(settings.bucket_name, key, settings.token_ttl, policy)
    return {"key": key, "token": token, "upload_url": settings.upload_host,
            "expires_at": int(time.time()) + settings.token_ttl}


def record_qiniu_callback(authorization: str, url: str, body: bytes, content_type: str) -> File:
    """Check Qiniu's signature on the callback and record the file for the user its token named."""
    auth = QiniuStorage().auth()
    if not authorization or not auth.verify_callback(authorization, url, body.decode("utf-8", "replace"),
                                                     content_type, method="POST"):
        raise NotAuthorized(_("The callback signature is wrong."))
    data = callback_fields(body.decode("utf-8", "replace"))
    key, user_id, size, mime = data["key"], int(data["user_id"]), int(data["size"]), data["content_type"]
    name = clean_filename(data.get("filename"))
    existing = db.session.scalar(select(File).where(File.key == key))
    if existing:
        return existing
    if db.session.get(User, user_id) is None:
        raise NotFound(_("The uploading user no longer exists."))
    record = File(owner_id=user_id, key=key, filename=name, size=size, content_type=mime, sha256="",
                  backend="qiniu")
    db.session.add(record)
    db.session.commit()
    return record


def callback_fields(body: str) -> dict[str, str]:
    """The fields of a signed callback body, each checked against what we issued; 400 on the first that is not,
    or on any field sent twice (the first is never simply taken)."""
    data: dict[str, str] = {}
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=20)
    except ValueError:
        raise InvalidField(_("The callback body has too many fields.")) from None
    for name, value in pairs:
        if name in data:
            raise InvalidField(_("A callback field is repeated."), field=name if name in CALLBACK_FIELDS else None)
        data[name] = value
    for name in CALLBACK_FIELDS:
        if name not in data:
            raise InvalidField(_("The callback has no %(name)s.", name=name), field=name)
    if not (data["user_id"].isascii() and data["user_id"].isdigit()):
        raise InvalidField(_("The user id is not a number."), field="user_id")
    issued = QINIU_KEY.fullmatch(data["key"])
    if issued is None or issued.group(1) != data["user_id"]:
        raise InvalidField(_("The key is not one issued to this user."), field="key")
    size = data["size"]
    if not (size.isascii() and size.isdigit() and int(size) <= configs.files.max_size):
        raise InvalidField(_("The size is not from 0 to %(max)s.", max=configs.files.max_size), field="size")
    if data["content_type"] not in configs.files.allowed_types:
        raise InvalidField(_("The content type is not allowed."), field="content_type")
    return data
