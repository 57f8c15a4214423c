"""Current QR and pairing codes live in the cache (Redis in production) for as long as they are
valid, never in the database.

A QR code is kept, announced and pushed as its text. Its PNG is drawn only where it is asked for
(`GET …/qr`): once per code, kept in the cache under the code's text while the code is valid,
whoever and however many ask. Browsers draw it themselves from the text (gateway/qr-image.js).

A code is valid for as long as the cache keeps it: the worker that made it sets its expiry from
the time it has left, by that worker's clock alone, and readers never compare its `expires_at`
with their own clock (a worker whose clock is minutes wrong still shows its codes).

The worker that runs the session writes them (`codes_keep`), and writes them again while they are
valid: a Redis that restarted or was flushed has forgotten them, and a cache that is down costs
only the API's view of them (503 `cache_unavailable`): they are announced as events and webhooks
all the same.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache

from gateway.core.errors import Conflict, ServiceUnavailable

KINDS = ("qr", "pair_code")


class CacheUnavailable(ServiceUnavailable):
    """The cache (Redis) cannot be reached: the codes in it cannot be read."""

    code = "cache_unavailable"
    message = "The cache is unavailable."


def _key(session_id: object, kind: str) -> str:
    return f"session:{session_id}:{kind}"


def code_made(code: str, expires_in: float) -> dict[str, Any]:
    """A code (kind `qr` or `pair_code`) as the cache keeps it: its text, and when it expires (a
    Unix time, by the clock of the worker that made it)."""
    return {"code": code, "expires_at": time.time() + expires_in}


def codes_keep(*, session_id: object, codes: dict[str, dict[str, Any]]) -> None:
    """Make the cache hold the session's `codes` (by kind, as `code_made` makes them) for the
    time each has left, and no code of the other kinds."""
    gone = []
    for kind in KINDS:
        value = codes.get(kind)
        if value is None or value["expires_at"] <= time.time():
            gone.append(_key(session_id, kind))
        else:
            _put(session_id, kind, value)
    if gone:
        cache.delete_many(gone)


def _put(session_id: object, kind: str, value: dict[str, Any]) -> None:
    cache.set(_key(session_id, kind), value, timeout=max(1, int(value["expires_at"] - time.time())))


def announced(code: dict[str, Any]) -> dict[str, Any]:
    """A cached code as events carry it: the code and when it expires (ISO 8601)."""
    expires_at = datetime.fromtimestamp(code["expires_at"], tz=UTC).isoformat()
    return {"code": code["code"], "expires_at": expires_at}


def code_get(*, session_id: object, kind: str) -> dict[str, Any] | None:
    """The session's current code of `kind`, None when it has none (the cache dropped it when it
    expired)."""
    return cache.get(_key(session_id, kind))


def code_text(*, session_id: object, kind: str) -> str | None:
    """The text of the session's current code of `kind`; None when it has none, or the cache
    cannot be read."""
    try:
        current = code_get(session_id=session_id, kind=kind)
    except Exception:  # noqa: BLE001
        return None
    return current["code"] if current else None


def pair_code_wait(
    *, session_id: object, before: str | None, timeout: float
) -> dict[str, Any] | None:
    """Wait (polling the cache) for a pairing code other than `before` (the one there when it was
    asked for: the worker makes a new one for each request); None after `timeout`. The worker that
    asks the engine for it answers through the cache; CacheUnavailable when the cache cannot be
    read (the code still comes as an event and a webhook)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            code = code_get(session_id=session_id, kind="pair_code")
        except Exception as exc:
            raise CacheUnavailable() from exc
        if code is not None and code["code"] != before:
            return code
        time.sleep(0.1)
    return None


def qr_image(code: str) -> str:
    """The QR code as a PNG data URL (error correction M, 8 px a module, a border of 2): ≈15 ms of
    CPU, so drawn only on demand (`code_image`)."""
    import qrcode

    buffer = io.BytesIO()
    qrcode.make(code, box_size=8, border=2).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# How long a QR code's image is kept: as long as WhatsApp's longest-lived QR code. It is kept under
# the code's text, which nobody asks for once the code has expired.
IMAGE_SECONDS = 60


def code_image(code: dict[str, Any]) -> str:
    """A cached QR code's image, drawn the first time it is asked for and kept in the cache under
    the code's text (many viewers, one drawing)."""
    key = "qr-image:" + hashlib.sha256(code["code"].encode()).hexdigest()
    image = cache.get(key)
    if image is None:
        image = qr_image(code["code"])
        cache.set(key, image, timeout=IMAGE_SECONDS)
    return image


class QrNotAvailable(Conflict):
    code = "qr_not_available"


def qr_current(*, session_id: object, status: str) -> dict[str, Any]:
    """The session's current QR code (the API's); QrNotAvailable when it shows none (it is not
    linking, or is linked already), CacheUnavailable when the cache is down."""
    try:
        current = code_get(session_id=session_id, kind="qr")
    except Exception as exc:
        raise CacheUnavailable() from exc
    if current is None:
        raise QrNotAvailable(f"The session has no QR code now (status {status}).")
    return current
