"""Request bodies are bounded at the edge, before anything reads them.

Django's own limits (`DATA_UPLOAD_MAX_MEMORY_SIZE`, the media limits) apply once a view parses a
body; by then a server may have buffered all of it. So the WSGI and ASGI applications refuse a
body over the largest request the path can take with a JSON 413 as soon as its size shows: from
`Content-Length` before a byte of it is read, or while a chunked body streams in. The largest
request is a message with the largest media (multipart) on the send path, and `API_MAX_JSON_BYTES`
everywhere else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.conf import settings

# Multipart's envelope and the message's other fields, beside the file itself.
ENVELOPE_BYTES = 1024 * 1024
_UPLOAD_PATH = re.compile(r"^/api/v1/sessions/[^/]+/messages$")


def max_body_bytes(path: str) -> int:
    if _UPLOAD_PATH.match(path):
        largest = max(
            settings.MEDIA_MAX_IMAGE_BYTES,
            settings.MEDIA_MAX_VIDEO_BYTES,
            settings.MEDIA_MAX_AUDIO_BYTES,
            settings.MEDIA_MAX_DOCUMENT_BYTES,
        )
        return largest + ENVELOPE_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _refusal(code: str, message: str) -> bytes:
    from gateway.errors import error_body

    return json.dumps(error_body(code, message)).encode()


def _too_large(limit: int) -> bytes:
    return _refusal("payload_too_large", f"The request body is larger than {limit} bytes.")


def _bad_length() -> bytes:
    return _refusal("malformed_request", "The Content-Length header is not a number.")


def _declared_length(value: str | None) -> int | None:
    """The declared body size; -1 when the header is there but not a size."""
    if value is None or value == "":
        return None
    return int(value) if value.isascii() and value.isdigit() else -1


# --- WSGI (gunicorn) ------------------------------------------------------------------------------

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_body_limit(app: WSGIApp) -> WSGIApp:
    """Refuses by `Content-Length` (Django reads no body without one: chunked bodies are empty to
    it, so nothing else can grow)."""

    def limited(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = _declared_length(environ.get("CONTENT_LENGTH"))
        limit = max_body_bytes(environ.get("PATH_INFO", ""))
        if length is None or 0 <= length <= limit:
            return app(environ, start_response)
        status, body = ("413 Payload Too Large", _too_large(limit))
        if length < 0:
            status, body = ("400 Bad Request", _bad_length())
        start_response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ],
        )
        return [body]

    return limited


# --- ASGI (uvicorn) -------------------------------------------------------------------------------

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def asgi_body_limit(app: ASGIApp) -> ASGIApp:
    """Refuses by `Content-Length` before reading, and stops a streamed body at the limit: the
    application then sees the client gone (Django answers nothing) and the 413 is sent here."""

    async def limited(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        limit = max_body_bytes(scope["path"])
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"content-length")
        length = _declared_length(raw.decode("latin-1") if raw is not None else None)
        if length is not None and length < 0:
            return await _respond(send, 400, _bad_length())
        if length is not None and length > limit:
            return await _respond(send, 413, _too_large(limit))
        received, over = 0, False

        async def receive_within_limit() -> dict[str, Any]:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        await app(scope, receive_within_limit, send)
        if over:
            await _respond(send, 413, _too_large(limit))

    return limited
