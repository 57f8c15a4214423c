"""Request bodies are bounded at the edge, before anything reads them.

Django's own limits (`DATA_UPLOAD_MAX_MEMORY_SIZE`, the media limits) apply once a view parses a
body; by then a server may have buffered all of it, and DRF's JSON parser reads its stream without
any limit. So the WSGI and ASGI applications judge a body by its `Content-Length` before a byte of
it is read: over the largest request the path and type can take, a JSON 413. The largest request
is a multipart message with the largest media on the send path, a sandbox message with its media in
base64 on the sandbox's receive path, and `API_MAX_JSON_BYTES` everywhere else.

A body without a `Content-Length` (chunked) is a 411: Django under WSGI would read it as empty,
and under ASGI would spool it before knowing whether anyone wants it. Every client that sends a
body can say how long it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from django.conf import settings

# Multipart's envelope and the message's other fields, beside the file itself.
ENVELOPE_BYTES = 1024 * 1024
_UPLOAD_PATH = re.compile(r"^/api/v1/sessions/[^/]+/messages$")
_SANDBOX_RECEIVE_PATH = re.compile(r"^/api/v1/sandbox/sessions/[^/]+/receive$")
_PICTURE_PATH = re.compile(r"^/api/v1/sessions/[^/]+/(groups/[^/]+/|profile/)picture$")
# The largest media the sandbox's receive control takes (in base64, in its JSON body).
SANDBOX_MEDIA_BYTES = 5 * 1024 * 1024


def max_body_bytes(path: str, content_type: str) -> int:
    if _UPLOAD_PATH.match(path) and content_type.lower().startswith("multipart/form-data"):
        largest = max(
            settings.MEDIA_MAX_IMAGE_BYTES,
            settings.MEDIA_MAX_VIDEO_BYTES,
            settings.MEDIA_MAX_AUDIO_BYTES,
            settings.MEDIA_MAX_DOCUMENT_BYTES,
        )
        return largest + ENVELOPE_BYTES
    if _PICTURE_PATH.match(path) and content_type.lower().startswith("multipart/form-data"):
        return settings.PICTURE_MAX_BYTES + ENVELOPE_BYTES
    if _SANDBOX_RECEIVE_PATH.match(path):
        return SANDBOX_MEDIA_BYTES * 4 // 3 + ENVELOPE_BYTES  # base64 in JSON
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def refusal(length: str | None, chunked: bool, path: str, content_type: str) -> tuple[int, bytes]:
    """(status, JSON body) refusing the request's body before it is read, or (0, b"")."""
    from gateway.core.errors import error_body

    def refuse(status: int, code: str, message: str) -> tuple[int, bytes]:
        return status, json.dumps(error_body(code, message)).encode()

    if chunked:
        return refuse(411, "length_required", "A request body needs a Content-Length.")
    if length is None or length == "":
        return 0, b""
    if not (length.isascii() and length.isdigit()):
        return refuse(400, "malformed_request", "The Content-Length header is not a number.")
    limit = max_body_bytes(path, content_type)
    if int(length) > limit:
        return refuse(413, "payload_too_large", f"The request body is larger than {limit} bytes.")
    return 0, b""


def _chunked(transfer_encoding: str | None) -> bool:
    return "chunked" in (transfer_encoding or "").lower()


# --- WSGI (gunicorn) ------------------------------------------------------------------------------

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_REASONS = {400: "Bad Request", 411: "Length Required", 413: "Payload Too Large"}


def wsgi_body_limit(app: WSGIApp) -> WSGIApp:
    def limited(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, body = refusal(
            environ.get("CONTENT_LENGTH"),
            _chunked(environ.get("HTTP_TRANSFER_ENCODING")),
            environ.get("PATH_INFO", ""),
            environ.get("CONTENT_TYPE", ""),
        )
        if not status:
            return app(environ, start_response)
        start_response(
            f"{status} {_REASONS[status]}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ],
        )
        return [body]

    return limited


# --- ASGI (uvicorn) -------------------------------------------------------------------------------

Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def asgi_body_limit(app: ASGIApp) -> ASGIApp:
    """uvicorn delivers exactly `Content-Length` bytes (its parser enforces the framing), so the
    header is the whole story."""

    async def limited(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, body = refusal(
            headers.get("content-length"),
            _chunked(headers.get("transfer-encoding")),
            scope["path"],
            headers.get("content-type", ""),
        )
        if not status:
            return await app(scope, receive, send)
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    return limited
