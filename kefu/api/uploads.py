"""``POST /api/kefu/upload``: an image or a file for a ``message_type`` 2 or 3 message.

Who may upload: a bearer token (users and agents of the REST API), a page session
(with its CSRF token), or a visitor (by ``visitor_id``; images only, a smaller limit).
What is stored: the bytes under a random name with an extension chosen by us from the
checked type, never the client's name. How it is served back: as an attachment unless
it is a raster image, with ``nosniff`` and a sandboxing CSP, so nothing uploaded can
run as a page (no HTML, no SVG) on this origin. How often: visitors, who cost nothing
to make up, upload at most ``VISITOR_UPLOADS_PER_ADDRESS_PER_MINUTE`` per client address.
"""

import os

from flask import Blueprint, abort, current_app, jsonify, request, send_from_directory

from kefu import api, auth
from kefu.errors import Forbidden, Invalid, KefuError, TooLarge, Unauthorized
from kefu.models import FILE, IMAGE
from kefu.services import upload_files, visitors
from kefu.web import session as web

bp = Blueprint("uploads", __name__)

# Raster images only (no SVG): extension → (content types accepted, magic bytes).
IMAGES = {
    "png": ({"image/png"}, (b"\x89PNG\r\n\x1a\n",)),
    "jpg": ({"image/jpeg", "image/pjpeg"}, (b"\xff\xd8\xff",)),
    "jpeg": ({"image/jpeg", "image/pjpeg"}, (b"\xff\xd8\xff",)),
    "gif": ({"image/gif"}, (b"GIF87a", b"GIF89a")),
    "webp": ({"image/webp"}, (b"RIFF",)),
}
FILES = {
    "pdf": {"application/pdf"},
    "txt": {"text/plain"},
    "csv": {"text/csv", "text/plain", "application/vnd.ms-excel"},
    "zip": {"application/zip", "application/x-zip-compressed"},
    "docx": {"application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    "xlsx": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    "doc": {"application/msword"},
    "xls": {"application/vnd.ms-excel"},
}
SERVE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}
# A name is random and never reused, so its bytes never change: a browser may keep them
# a day (the dashboard shows the same images again and again). "private": a shared cache
# (a company proxy) must not, since an upload belongs to one conversation.
SERVE_CACHE_CONTROL = "private, max-age=86400"


def _uploader() -> str:
    """'member' (token or page session) or 'visitor'; raises if neither."""
    header = request.headers.get("Authorization")
    if header:
        auth.authenticate(header)
        return "member"
    if web.current_agent() or web.current_user():
        web.check_csrf()  # cookies ride along cross-site; the token does not
        return "member"
    # Anyone else may only be a visitor: the address's budget is spent before the body
    # (the visitor_id is a field of it) is read and its file spooled to disk.
    # The client's address: the forwarded one behind KEFU_PROXY_COUNT.
    current_app.extensions["kefu.live"].admit_visitor_upload(request.remote_addr)
    if request.form.get("visitor_id"):
        visitors.check_visitor_id(request.form["visitor_id"])
        return "visitor"
    raise Unauthorized("Sign in, send a Bearer token, or give a visitor_id")


def _classify(upload) -> tuple[str, int]:
    """(our extension, message_type) after checking extension, declared type and bytes."""
    name = upload.filename or ""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    declared = (upload.mimetype or "").lower()
    head = upload.stream.read(16)
    upload.stream.seek(0)
    if not head:  # nothing to show or open: a message would carry a dead link
        raise Invalid("The file is empty")
    if ext in IMAGES:
        types, magics = IMAGES[ext]
        if declared not in types or not head.startswith(magics):
            raise Invalid("The image's content does not match its type")
        if ext == "webp" and head[8:12] != b"WEBP":
            raise Invalid("The image's content does not match its type")
        return ("jpg" if ext == "jpeg" else ext), IMAGE
    if ext in FILES and declared in FILES[ext] | {"application/octet-stream"}:
        return ext, FILE
    raise Invalid("This kind of file is not accepted")


def _save(upload, ext: str, limit: int) -> tuple[str, int]:
    folder = current_app.config["UPLOAD_DIR"]
    os.makedirs(folder, exist_ok=True)
    name = upload_files.new_name(ext)
    path = os.path.join(folder, name)
    size = 0
    with open(path, "wb") as out:
        while chunk := upload.stream.read(64 * 1024):
            size += len(chunk)
            if size > limit:
                out.close()
                os.remove(path)
                raise TooLarge(f"File is too large (max {limit} bytes)")
            out.write(chunk)
    return name, size


@bp.before_request
def cap_body():
    """Refuse an oversized body before it is parsed (per request: other routes keep theirs)."""
    if request.path == "/api/kefu/upload":
        request.max_content_length = current_app.config["UPLOAD_MAX_BYTES"] + 64 * 1024


@bp.post("/api/kefu/upload")
def upload():
    who = _uploader()
    upload = request.files.get("file")
    if upload is None:
        raise Invalid("file is required (multipart field 'file')")
    ext, message_type = _classify(upload)
    if who == "visitor" and message_type != IMAGE:
        raise Forbidden("Visitors may upload images only")
    key = "UPLOAD_MAX_BYTES" if who == "member" else "UPLOAD_VISITOR_MAX_BYTES"
    limit = current_app.config[key]
    name, size = _save(upload, ext, limit)
    data = {"url": f"/uploads/{name}", "message_type": message_type, "size": size}
    return jsonify({"code": 200, "data": data})


@bp.get("/uploads/<name>")
def serve(name: str):
    if "/" in name or name.startswith(".") or "." not in name:
        abort(404)
    ext = name.rsplit(".", 1)[-1]
    image = ext in SERVE_TYPES
    response = send_from_directory(
        current_app.config["UPLOAD_DIR"],
        name,
        as_attachment=not image,
        mimetype=SERVE_TYPES.get(ext, "application/octet-stream"),
    )
    response.headers["Cache-Control"] = SERVE_CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


bp.errorhandler(KefuError)(api.domain_error)  # the API's envelope


@bp.errorhandler(413)
def too_large(exc):
    return jsonify({"code": 413, "message": "File is too large"}), 413


@bp.errorhandler(403)
def refused(exc):
    return jsonify({"code": 403, "message": exc.description}), 403
