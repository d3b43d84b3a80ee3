"""An S3 bucket, on AWS or any S3-compatible store (MinIO, R2, OSS, COS): the ``s3`` storage backend.

Server-side uploads are streamed: one PUT up to ``s3.multipart_threshold`` bytes, a multipart upload in parts of
that size above it, each part spooled to a temporary file (not held in memory) while it is read. A failed upload
leaves no part behind (the multipart upload is aborted). Every call gives up after ``s3.connect_timeout`` /
``s3.read_timeout`` with ``s3.max_attempts`` tries, and an unreachable or failing store is a 503. At most
``server.threads - 1`` request threads wait on the store at once (a proxied download holds a place only while it
reads from the store, not while its client is slow to take the bytes, and ends after ``s3.stream_deadline``): when
they all do, another call waits ``s3.connect_timeout`` for a place, then is a 503, so a slow store never takes the
threads every other endpoint needs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

import boto3
import urllib3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.handlers import add_expect_header

from app.config import configs
from app.config.sections import S3Settings
from app.errors import ServiceUnavailable, StorageNotConfigured
from app.i18n import _
from app.services.storage_base import Stored, Written, attachment

log = logging.getLogger(__name__)
SPOOL = 1024 * 1024  # bytes of a part kept in memory before it goes to a temporary file
MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str


@functools.lru_cache(maxsize=8)
def _client(settings: S3Settings) -> Any:
    """One client per settings (clients are thread-safe and costly to make)."""
    session = boto3.session.Session(aws_access_key_id=settings.access_key or None,
                                    aws_secret_access_key=settings.secret_key or None,
                                    region_name=settings.region or None)
    config = Config(
        connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        s3={"addressing_style": "path" if settings.path_style else "auto"}, signature_version="s3v4",
        # Only the checksums S3 requires: the CRC headers newer botocore adds by default are refused by some
        # S3-compatible stores.
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    client = session.client("s3", endpoint_url=settings.endpoint_url or None, config=config)
    # No "Expect: 100-continue" on PUTs: botocore waits a second for the 100 before sending the body, which would
    # put a store that accepts and never answers past the 2 s of a 503.
    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


@functools.lru_cache(maxsize=4)
def _places(size: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(size)


Places = threading.BoundedSemaphore


def take_place(places: Places | None = None, wait: float | None = None) -> Places:
    """A place among the threads that may wait on the store (``server.threads - 1``), waited for at most
    ``s3.connect_timeout`` (a burst on a healthy store queues briefly); then 503. The caller releases it."""
    places = places or _places(max(1, configs.server.threads - 1))
    if not places.acquire(timeout=configs.s3.connect_timeout if wait is None else wait):
        log.error("S3: every place for a call is taken (the store is slow?)")
        raise ServiceUnavailable(_("Cloud storage is busy; try again shortly."))
    return places


@contextlib.contextmanager
def answering(action: str, key: str = "", offline: bool = False) -> Iterator[None]:
    """Turn what the store or the network says into our errors: no credentials 501, anything else 503 (logged).
    A call to the store (not ``offline`` signing) holds a place (take_place) meanwhile."""
    places = None if offline else take_place()
    try:
        yield
    except NoCredentialsError:
        raise StorageNotConfigured(_("Set s3.access_key and s3.secret_key (or AWS credentials).")) from None
    except ClientError as exc:
        log.error("S3 %s of %s refused: %s", action, key or "-", exc.response.get("Error", {}).get("Code"))
        raise ServiceUnavailable(_("Cloud storage refused the request.")) from None
    except BotoCoreError as exc:
        log.error("S3 %s of %s failed: %s: %s", action, key or "-", type(exc).__name__, exc)
        raise ServiceUnavailable(_("Cloud storage did not answer.")) from None
    finally:
        if places is not None:
            places.release()


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING


class S3Storage:
    """A bucket reached through boto3; keys are ours (``new_key``), never a client's name."""

    name = "s3"

    def client(self) -> Any:
        settings = configs.s3
        if not settings.bucket:
            raise StorageNotConfigured(_("Set s3.bucket (and s3.endpoint_url for a store other than AWS)."))
        return _client(settings)

    def save(self, key: str, chunks: Iterator[bytes], content_type: str) -> Written:
        """Stream ``chunks`` to ``key``; a multipart upload once they pass ``s3.multipart_threshold``."""
        client, bucket, part_size = self.client(), configs.s3.bucket, configs.s3.multipart_threshold
        digest, size = hashlib.sha256(), 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            with answering("upload", key), tempfile.SpooledTemporaryFile(max_size=SPOOL) as part:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        if part.tell() == part_size:  # full, and more is coming: send it
                            if upload_id is None:
                                upload_id = client.create_multipart_upload(Bucket=bucket, Key=key,
                                                                           ContentType=content_type)["UploadId"]
                            parts.append(self._send_part(client, key, upload_id, len(parts) + 1, part))
                        room = part_size - part.tell()
                        part.write(view[:room])
                        view = view[room:]
                if upload_id is None:
                    length = part.tell()
                    part.seek(0)
                    client.put_object(Bucket=bucket, Key=key, Body=part, ContentLength=length,
                                      ContentType=content_type)
                else:
                    parts.append(self._send_part(client, key, upload_id, len(parts) + 1, part))
                    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                     MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(BotoCoreError, ClientError):
                    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        return Written(size, digest.hexdigest())

    @staticmethod
    def _send_part(client: Any, key: str, upload_id: str, number: int, part: IO[bytes]) -> dict[str, Any]:
        """Send what ``part`` holds as part ``number``, then empty it for the next."""
        length = part.tell()
        part.seek(0)
        answer = client.upload_part(Bucket=configs.s3.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                    Body=part, ContentLength=length)
        part.seek(0)
        part.truncate()
        return {"ETag": answer["ETag"], "PartNumber": number}

    def delete(self, key: str) -> None:
        """Remove the object; a failure is logged, not raised (its row is gone: prune-files takes the bytes)."""
        try:
            with answering("delete", key):
                self.client().delete_object(Bucket=configs.s3.bucket, Key=key)
        except (ServiceUnavailable, StorageNotConfigured) as exc:
            log.error("S3 object %s is left behind: %s", key, exc.message)

    def head(self, key: str) -> ObjectInfo | None:
        """Size and type of the object, or None when there is none."""
        client = self.client()
        with answering("head", key):
            try:
                answer = client.head_object(Bucket=configs.s3.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
        return ObjectInfo(int(answer["ContentLength"]), str(answer.get("ContentType", "")))

    def verify_bucket(self) -> None:
        """503 (or 501) unless the bucket is there and answers, before anything is taken for gone: a HEAD of an
        object in a missing bucket is a bare 404, like a missing object."""
        client, settings = self.client(), configs.s3
        with answering("bucket check"):
            try:
                client.head_bucket(Bucket=settings.bucket)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                raise ServiceUnavailable(_("Bucket %(bucket)s cannot be used at %(endpoint)s (%(code)s): check "
                                           "s3.bucket and s3.endpoint_url.", bucket=settings.bucket,
                                           endpoint=settings.endpoint_url or "AWS", code=code)) from None

    def exists(self, key: str) -> bool:
        """Whether the bucket holds ``key``, by a listing (where a missing bucket is an error, not an empty
        answer); 503 when the store does not say (never taken as "gone")."""
        client = self.client()
        with answering("lookup", key):
            answer = client.list_objects_v2(Bucket=configs.s3.bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in answer.get("Contents", []))

    def stored(self) -> Iterator[Stored]:
        """Every object under ``s3.prefix``, a page of 1000 at a time (ListObjectsV2)."""
        client = self.client()
        with answering("listing"):
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=configs.s3.bucket,
                                                                     Prefix=configs.s3.prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    yield Stored(item["Key"], item["LastModified"].timestamp())

    def read(self, key: str, byte_range: tuple[int, int] | None = None) -> dict[str, Any] | None:
        """GetObject's answer (``Body``: botocore's StreamingBody, ``ContentLength``, ``ContentRange``), whole or
        ``byte_range`` = (first, last) inclusive; None when there is no such object."""
        client = self.client()
        extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        with answering("download", key):
            try:
                return dict(client.get_object(Bucket=configs.s3.bucket, Key=key, **extra))
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise

    def copy(self, source: str, target: str, content_type: str) -> None:
        """Copy ``source`` to ``target`` inside the bucket (server side), its headers replaced by ours only."""
        client = self.client()
        with answering("copy", source):
            client.copy_object(Bucket=configs.s3.bucket, Key=target, ContentType=content_type,
                               CopySource={"Bucket": configs.s3.bucket, "Key": source},
                               MetadataDirective="REPLACE")

    def url(self, key: str) -> str | None:
        """The public URL when ``s3.public_url`` is set; otherwise None (the content endpoint signs one per call)."""
        base = configs.s3.public_url
        return f"{base.rstrip('/')}/{quote(key)}" if base else None

    def presigned_get(self, key: str, filename: str, content_type: str) -> str:
        """A download URL valid for ``s3.download_ttl`` seconds that names ``filename`` (signed here, offline)."""
        params = {"Bucket": configs.s3.bucket, "Key": key, "ResponseContentType": content_type,
                  "ResponseContentDisposition": attachment(filename)}
        with answering("signing", key, offline=True):
            return str(self.client().generate_presigned_url("get_object", Params=params,
                                                            ExpiresIn=configs.s3.download_ttl))

    def presigned_post(self, key: str, content_type: str, max_size: int) -> dict[str, Any]:
        """A form upload of exactly ``key``, ``content_type`` and at most ``max_size`` bytes, valid for
        ``s3.upload_ttl`` seconds: ``{"url", "fields"}`` (signed here, offline)."""
        conditions = [{"bucket": configs.s3.bucket}, {"key": key}, {"Content-Type": content_type},
                      ["content-length-range", 0, max_size]]
        with answering("signing", key, offline=True):
            return dict(self.client().generate_presigned_post(
                configs.s3.bucket, key, Fields={"Content-Type": content_type}, Conditions=conditions,
                ExpiresIn=configs.s3.upload_ttl))


def streamed_body(answer: dict[str, Any], chunk_size: int) -> Iterator[bytes]:
    """The body of a GetObject ``answer`` in chunks, each read holding a place among the threads that wait on the
    store (none while the client is sent what was read); cut (the connection closes) once it takes longer than
    ``s3.stream_deadline`` in all, or when no place comes within ``s3.connect_timeout``. Each read takes what has
    come (read1), so a store that trickles bytes meets the deadline too. The settings are read here: the chunks
    are read after the request's context has gone."""
    places = _places(max(1, configs.server.threads - 1))
    return _chunks(answer["Body"], chunk_size, places, configs.s3.stream_deadline, configs.s3.connect_timeout)


def _chunks(body: Any, size: int, places: Places, seconds: float, wait: float) -> Iterator[bytes]:
    deadline = time.monotonic() + seconds
    raw = body._raw_stream  # urllib3's response: read1 returns after one socket read, not once size bytes came
    try:
        while True:
            take_place(places, wait)  # only while the store is read: a client that reads nothing holds none
            try:
                chunk = raw.read1(size)
            finally:
                places.release()
            if not chunk:
                return
            yield chunk
            if time.monotonic() > deadline:
                log.error("S3 download cut after s3.stream_deadline (%s s)", seconds)
                return
    except ServiceUnavailable:
        log.error("S3 download cut: no place to read the store from")
    except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
        log.error("S3 download failed midway: %s: %s", type(exc).__name__, exc)
    finally:
        body.close()
