"""Files: uploads to the configured storage, downloads, and direct uploads to Qiniu or S3."""

from flask import Response, redirect, request, send_file
from flask_restx import Namespace, Resource, fields
from werkzeug.datastructures import FileStorage
from werkzeug.http import parse_range_header

from app import auth
from app.api.envelope import NullableString, Timestamp, accepts, fails, page_of, public, returns, returns_nothing
from app.api.fields import page_args, paging_of
from app.api.validation import BoundedText, Parser, PartsParser, WholeNumber
from app.decorators import login_check
from app.errors import RangeNotSatisfiable
from app.models import File
from app.services import files, s3_uploads
from app.services.s3_storage import streamed_body
from app.services.storage_base import CHUNK, attachment

ns = Namespace("files", description="Uploads to local disk, Qiniu or S3")


class FileUrl(NullableString):
    """Where to download the file: the storage's URL, or our content endpoint."""

    def output(self, key, obj, ordered=False, **kwargs):
        return files.download_url(obj)


file_model = ns.model("File", {
    "id": fields.Integer(required=True),
    "filename": fields.String(required=True, description="the uploaded name, cleaned; for display only"),
    "size": fields.Integer(required=True),
    "content_type": fields.String(required=True, example="image/png"),
    "sha256": fields.String(required=True, description="empty for direct uploads (Qiniu, S3)"),
    "backend": fields.String(required=True, enum=["local", "qiniu", "s3"]),
    "url": FileUrl(required=True),
    "created_at": Timestamp(required=True),
})
upload_token_model = ns.model("UploadToken", {
    "key": fields.String(required=True),
    "token": fields.String(required=True),
    "upload_url": fields.String(required=True),
    "expires_at": fields.Integer(required=True, description="Unix time"),
})


class StringMap(fields.Raw):
    """An object whose values are all strings."""

    __schema_type__ = "object"

    def schema(self) -> dict:
        return {**super().schema(), "additionalProperties": {"type": "string"}}


upload_url_model = ns.model("UploadUrl", {
    "key": fields.String(required=True, description="for POST /files/s3/complete"),
    "url": fields.String(required=True, description="POST the form here"),
    "fields": StringMap(required=True, description="form fields to send, in this order, before the part `file`"),
    "expires_at": fields.Integer(required=True, description="Unix time"),
})
complete_request = ns.model("S3Complete", {
    "key": fields.String(required=True, max_length=128, description="from GET /files/upload-url"),
})

upload_args = PartsParser()
upload_args.add_argument("file", type=FileStorage, location="files", required=True, help="the file")
token_args = Parser()
token_args.add_argument("filename", type=BoundedText(255), location="args", required=True)
token_args.add_argument("content_type", type=BoundedText(255), location="args")
upload_url_args = Parser()
upload_url_args.add_argument("filename", type=BoundedText(255), location="args", required=True)
upload_url_args.add_argument("content_type", type=BoundedText(255), location="args", required=True)
upload_url_args.add_argument("size", type=WholeNumber(0, 2**53), location="args", required=True, help="bytes")
# What Qiniu posts (form-encoded, the policy's callbackBody); documented here, read by the service once the
# signature over the raw body holds.
callback_form = Parser()
callback_form.add_argument("key", type=BoundedText(128), location="form", required=True, help="the stored key")
callback_form.add_argument("size", type=WholeNumber(0, 2**53), location="form", required=True, help="bytes")
callback_form.add_argument("content_type", type=BoundedText(255), location="form", required=True)
callback_form.add_argument("filename", type=BoundedText(255), location="form", help="the uploader's file name")
callback_form.add_argument("user_id", type=WholeNumber(1, 2**53), location="form", required=True,
                           help="the user the upload token was issued to")


@ns.route("/")
class Files(Resource):
    @login_check
    @ns.expect(upload_args)
    @returns(ns, file_model, code=201, description="Stored")
    @fails(ns, 400, 413, 415, 503)
    def post(self):
        """Upload a file (multipart field `file`): 413 over files.max_size, 415 for a type not allowed."""
        upload = upload_args.parse_args()["file"]
        return files.store_upload(auth.current_user(), upload.stream, upload.filename)

    @login_check
    @ns.expect(page_args)
    @returns(ns, page_of(ns, file_model))
    @fails(ns, 400, 503)
    def get(self):
        """Your files, newest first."""
        args = page_args.parse_args()
        return files.list_files(auth.current_user(), paging_of(args))


@ns.route("/<int:file_id>")
@ns.param("file_id", "the file's id")
class FileItem(Resource):
    @login_check
    @returns(ns, file_model)
    @fails(ns, 404, 503)
    def get(self, file_id: int):
        """A file's metadata; owner or admin."""
        return files.get_file(file_id, auth.current_user())

    @login_check
    @returns_nothing(ns, "Deleted, bytes included")
    @fails(ns, 404, 503)
    def delete(self, file_id: int):
        """Delete a file and its bytes; owner or admin."""
        files.delete_file(files.get_file(file_id, auth.current_user()))


@ns.route("/<int:file_id>/content")
@ns.param("file_id", "the file's id")
class FileContent(Resource):
    @login_check
    @ns.produces(["*/*"])  # the file's own type; errors are JSON
    @ns.response(200, "The bytes, with Content-Type, Content-Length, Content-Disposition, ETag; Range works")
    @ns.response(206, "Part of the bytes, for a Range request")
    @ns.response(302, "Stored in Qiniu or S3: redirected to its URL (S3: presigned, the file name in "
                      "Content-Disposition), unless s3.proxy_downloads streams it here")
    @ns.response(304, "Not modified (If-None-Match)")
    @fails(ns, 404, 416, 501, 503)
    def get(self, file_id: int):
        """Download the bytes; owner or admin."""
        record = files.get_file(file_id, auth.current_user())
        target = files.redirect_url(record)
        if target is not None:
            return redirect(target, code=302)
        ignore_unusable_range()
        if record.backend == "s3":
            return streamed(record)
        return send_file(files.local_path(record), mimetype=record.content_type, as_attachment=True,
                         download_name=record.filename, conditional=True, etag=record.sha256, max_age=0)


def streamed(record: File) -> Response:
    """The bytes of an S3 file passed through as they come, with the headers send_file gives a local one."""
    if record.sha256 and record.sha256 in request.if_none_match:
        return Response(status=304, headers={"ETag": f'"{record.sha256}"'})
    status, span, length = 200, None, record.size
    if request.range is not None:
        found = request.range.range_for_length(record.size)
        if found is None:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{record.size}"})
        status, span, length = 206, (found[0], found[1] - 1), found[1] - found[0]
    answer = files.s3_body(record, span)  # its length and range frame the answer, never the row's size
    response = Response(streamed_body(answer, CHUNK), status=status, mimetype=record.content_type,
                        direct_passthrough=True)
    response.call_on_close(answer["Body"].close)
    response.headers.update({"Content-Length": str(answer.get("ContentLength", length)),
                             "Content-Disposition": attachment(record.filename),
                             "Accept-Ranges": "bytes", "Cache-Control": "no-cache"})
    if record.sha256:
        response.headers["ETag"] = f'"{record.sha256}"'
    if span is not None:
        response.headers["Content-Range"] = answer.get("ContentRange") or f"bytes {span[0]}-{span[1]}/{record.size}"
    return response


def ignore_unusable_range() -> None:
    """RFC 9110 14.2: a Range that does not parse, in a unit other than bytes, or of several ranges (not served
    here) is ignored, so the whole body is sent; Werkzeug would answer 416. Only one satisfiable byte range
    gets 206, an unsatisfiable one 416."""
    value = request.headers.get("Range")
    if value is None:
        return
    parsed = parse_range_header(value)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        request.environ.pop("HTTP_RANGE", None)  # send_file reads the Range from the WSGI environ


@ns.route("/upload-token")
class UploadToken(Resource):
    @login_check
    @ns.expect(token_args)
    @returns(ns, upload_token_model)
    @fails(ns, 400, 415, 501, 503)
    def get(self):
        """A Qiniu direct-upload token for one file; 501 while Qiniu keys are not configured."""
        args = token_args.parse_args()
        return files.qiniu_upload_token(auth.current_user(), args["filename"], args["content_type"])


@ns.route("/qiniu/callback")
class QiniuCallback(Resource):
    @public
    @ns.expect(callback_form)
    @returns(ns, file_model, description="Recorded; Qiniu relays this answer to the uploader")
    @fails(ns, 400, 401, 404, 501, 503)
    def post(self):
        """Called by Qiniu after a direct upload; its signature is checked (401 when wrong), then its fields (400
        for a field sent twice, or a key, user, size or type we did not issue)."""
        return files.record_qiniu_callback(request.headers.get("Authorization", ""), request.url,
                                           request.get_data(), request.content_type or "")


@ns.route("/upload-url")
class UploadUrl(Resource):
    @login_check
    @ns.expect(upload_url_args)
    @returns(ns, upload_url_model)
    @fails(ns, 400, 413, 415, 429, 501, 503)
    def get(self):
        """An S3 presigned POST for one file (its policy limits the key, size and type); then POST
        /files/s3/complete. 413 over files.max_size, 415 for a type not allowed; 429 (Retry-After) with
        s3.max_pending uploads of yours not yet completed; 501 without S3 settings."""
        args = upload_url_args.parse_args()
        return s3_uploads.issue_upload_url(auth.current_user(), args["filename"], args["content_type"], args["size"])


@ns.route("/s3/complete")
class S3Complete(Resource):
    @login_check
    @accepts(ns, complete_request)
    @returns(ns, file_model, code=201, description="Recorded (again: the same file, when completed before)")
    @fails(ns, 400, 409, 413, 415, 501, 503)
    def post(self):
        """Record a direct upload once its object is checked, moved to a key of its own (the form cannot write
        there): 400 (field key) for a key not issued to you or not uploaded yet; 409 while another request
        completes the same key (retry); 413 or 415, the object deleted, when it is larger or of another type than
        issued; 503 (retry) when the store or the database fails."""
        return s3_uploads.complete_upload(auth.current_user(), ns.payload["key"])
