"""Media of messages: size limits per type, the type told by the bytes (never by the name or the
declared type alone), a safe file name, storage through `STORAGES["default"]`, and how stored
media are served.

Media come from strangers (any WhatsApp user can send a linked number a "document" that is HTML,
or an "image" that is SVG), so how a file is served is decided by its bytes alone, once, when it
is stored: only types that cannot run script (JPEG, PNG, WebP, GIF, audio, video) are shown
inline; everything else is a download of `application/octet-stream`, whatever its name or
declared type says. Every temporary media URL carries that decision (`response_headers`).
"""

from __future__ import annotations

import hashlib
import mimetypes
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filetype
from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.utils.http import content_disposition_header
from django.utils.text import get_valid_filename

from gateway.core.errors import ApiError

if TYPE_CHECKING:
    from messaging.models import Message

# What WhatsApp takes for each kind of message, by the bytes' real type.
ACCEPTED = {
    "image": {"image/jpeg", "image/png", "image/webp"},
    "video": {"video/mp4", "video/3gpp", "video/quicktime"},
    "audio": {"audio/mpeg", "audio/mp4", "audio/ogg", "audio/aac", "audio/amr", "video/mp4"},
    "voice": {"audio/ogg"},  # a voice note is Ogg Opus
    "sticker": {"image/webp"},
}
MEDIA_TYPES = ("image", "video", "audio", "voice", "document", "sticker")
# WhatsApp's sticker limits: a static WebP up to 100 KB, an animated one up to 500 KB.
STICKER_MAX_BYTES, ANIMATED_STICKER_MAX_BYTES = 100 * 1024, 500 * 1024
# Images a browser shows without running anything in them (not SVG: it can carry script).
INLINE_IMAGES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
DOWNLOAD = "application/octet-stream"
MEDIA_SALT = "messaging.media"


class MediaRefused(ApiError):
    """A file the message cannot carry (too large, empty, not what its type says)."""

    def __init__(self, code: str, message: str, *, status: int) -> None:
        super().__init__(message, code=code, status=status)


@dataclass(frozen=True)
class StoredMedia:
    name: str  # in the default storage
    mime_type: str
    size: int
    sha256: str
    filename: str
    served_as: str

    def model_fields(self) -> dict[str, object]:
        """The Message fields that describe it."""
        return {
            "media": self.name,
            "media_mime_type": self.mime_type,
            "media_size": self.size,
            "media_sha256": self.sha256,
            "media_filename": self.filename,
            "media_served_as": self.served_as,
        }


def _inline(content_type: str) -> bool:
    return content_type in INLINE_IMAGES or content_type.startswith(("audio/", "video/"))


# filetype reads at most this many leading bytes to tell a type.
SNIFF_BYTES = 8192


def served_as(data: bytes) -> str:
    """The type a file is served as: what its bytes are when that cannot run script, otherwise
    application/octet-stream (a download)."""
    sniffed = filetype.guess_mime(data) or ""
    return sniffed if _inline(sniffed) else DOWNLOAD


def response_headers(served: str, filename: str) -> dict[str, str]:
    """`Content-Type` and `Content-Disposition` for a file stored as `served` (a `served_as`
    value; anything else, such as "" for files stored before, is a download)."""
    inline = _inline(served)
    return {
        "Content-Type": served if inline else DOWNLOAD,
        "Content-Disposition": content_disposition_header(not inline, filename or "file")
        or "attachment",
    }


def max_bytes(kind: str) -> int:
    return {
        "image": settings.MEDIA_MAX_IMAGE_BYTES,
        "video": settings.MEDIA_MAX_VIDEO_BYTES,
        "audio": settings.MEDIA_MAX_AUDIO_BYTES,
        "voice": settings.MEDIA_MAX_AUDIO_BYTES,
        "sticker": ANIMATED_STICKER_MAX_BYTES,
    }.get(kind, settings.MEDIA_MAX_DOCUMENT_BYTES)


def webp_animated(data: bytes) -> bool:
    """Whether a WebP has more than one frame: its VP8X header's animation flag (the WebP
    container spec, RIFF `VP8X` chunk, flags byte bit 1)."""
    return data[12:16] == b"VP8X" and bool(data[20] & 0x02)


def check_size(kind: str, size: int) -> None:
    limit = max_bytes(kind)
    if size > limit:
        raise MediaRefused(
            "payload_too_large", f"A {kind} may have at most {limit} bytes.", status=413
        )


def safe_filename(name: str, fallback: str) -> str:
    """The last path component, normalised, with nothing a file system or a header could
    misread; `fallback` when nothing is left."""
    name = unicodedata.normalize("NFKC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip().lstrip(".")
    try:
        name = get_valid_filename(name)[:120]
    except Exception:  # noqa: BLE001 - Django refuses names it cannot make valid
        name = ""
    return name or fallback


def inspect(kind: str, data: bytes, declared_type: str = "", filename: str = "") -> str:
    """The bytes' mime type, checked against the message's kind: 413 too large, 415 not what the
    kind needs (or not what was declared)."""
    check_size(kind, len(data))
    if not data:
        raise MediaRefused("media_empty", "The file is empty.", status=400)
    sniffed = filetype.guess_mime(data) or ""
    if kind in ACCEPTED:
        if sniffed not in ACCEPTED[kind]:
            raise MediaRefused(
                "unsupported_media_type",
                f"The file is not a supported {kind} "
                f"({sniffed or 'unknown type'}; accepted: {', '.join(sorted(ACCEPTED[kind]))}).",
                status=415,
            )
        if kind == "sticker" and not webp_animated(data) and len(data) > STICKER_MAX_BYTES:
            raise MediaRefused(
                "payload_too_large",
                f"A static sticker may have at most {STICKER_MAX_BYTES} bytes "
                f"(an animated one {ANIMATED_STICKER_MAX_BYTES}).",
                status=413,
            )
        return "audio/ogg; codecs=opus" if kind == "voice" else sniffed
    # Documents may be anything; a declared or named type must not contradict the bytes.
    guessed = declared_type or mimetypes.guess_type(filename)[0] or ""
    container = sniffed == "application/zip" and guessed.startswith("application/")
    if sniffed and guessed not in ("", "application/octet-stream", sniffed) and not container:
        raise MediaRefused(
            "unsupported_media_type", f"The file's bytes are {sniffed}, not {guessed}.", status=415
        )
    return sniffed or guessed or "application/octet-stream"


def store(
    *,
    session_id: object,
    message_id: object,
    kind: str,
    content: bytes | Path,
    mime_type: str,
    filename: str,
) -> StoredMedia:
    """Store `content` (bytes, or a local file, read in chunks: memory stays bounded for large
    inbound media) as the message's media."""
    extension = mimetypes.guess_extension(mime_type.split(";")[0]) or ""
    name = safe_filename(filename, f"{kind}{extension}")
    file = ContentFile(content) if isinstance(content, bytes) else File(open(content, "rb"))
    with file:
        digest, size, head = hashlib.sha256(), 0, b""
        for chunk in file.chunks():
            head = head or chunk[:SNIFF_BYTES]
            digest.update(chunk)
            size += len(chunk)
        file.seek(0)
        saved = default_storage.save(f"{session_id}/{message_id}/{name}", file)
    return StoredMedia(saved, mime_type, size, digest.hexdigest(), name, served_as(head))


def media_url(message: Message) -> str | None:
    """A temporary URL of the message's media (`MEDIA_URL_SECONDS`): presigned on S3, signed and
    served by the gateway otherwise; either way it carries the headers the file is served with
    (`response_headers`), so no stored file can render as something that runs script."""
    if not message.media:
        return None
    headers = response_headers(message.media_served_as, message.media_filename)
    if settings.S3_BUCKET:
        s3: Any = default_storage  # django-storages' S3Storage: its url() presigns
        return s3.url(
            message.media.name,
            expire=settings.MEDIA_URL_SECONDS,
            parameters={
                "ResponseContentType": headers["Content-Type"],
                "ResponseContentDisposition": headers["Content-Disposition"],
            },
        )
    token = signing.TimestampSigner(salt=MEDIA_SALT).sign_object(
        [message.media.name, message.media_served_as, message.media_filename]
    )
    return f"{settings.PUBLIC_URL}/media/{token}"


def media_from_token(token: str) -> tuple[str, dict[str, str]] | None:
    """The storage name and response headers of a `/media/<token>` URL."""
    try:
        signed = signing.TimestampSigner(salt=MEDIA_SALT).unsign_object(
            token, max_age=settings.MEDIA_URL_SECONDS
        )
    except signing.BadSignature:
        return None
    if not (
        isinstance(signed, list) and len(signed) == 3 and all(isinstance(v, str) for v in signed)
    ):
        return None
    name, served_as, filename = signed
    return name, response_headers(served_as, filename)
