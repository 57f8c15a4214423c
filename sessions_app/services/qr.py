"""Current QR and pairing codes live in the cache (Redis in production) for as long as they are
valid, never in the database.

A QR code is kept, announced and pushed as its text. Its PNG is drawn only where it is asked for
(`GET …/qr`): once per code, kept in the cache under the code's text while the code is valid,
whoever and however many ask. Browsers draw it themselves from the text (gateway/qr-image.js).
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


def _key(session_id: object, kind: str) -> str:
    return f"session:{session_id}:{kind}"


def code_store(*, session_id: object, kind: str, code: str, expires_in: float) -> dict[str, Any]:
    """Keep `code` (kind `qr` or `pair_code`) until it expires; returns what was stored."""
    value = {"code": code, "expires_at": time.time() + expires_in, "stored_at": time.time()}
    cache.set(_key(session_id, kind), value, timeout=max(1, int(expires_in)))
    return value


def announced(code: dict[str, Any]) -> dict[str, Any]:
    """A cached code as events carry it: the code and when it expires (ISO 8601)."""
    expires_at = datetime.fromtimestamp(code["expires_at"], tz=UTC).isoformat()
    return {"code": code["code"], "expires_at": expires_at}


def code_get(*, session_id: object, kind: str) -> dict[str, Any] | None:
    value = cache.get(_key(session_id, kind))
    if value is None or value["expires_at"] <= time.time():
        return None
    return value


def codes_clear(*, session_id: object) -> None:
    cache.delete_many([_key(session_id, "qr"), _key(session_id, "pair_code")])


def pair_code_wait(*, session_id: object, since: float, timeout: float) -> dict[str, Any] | None:
    """Wait (polling the cache) for a pairing code stored after `since`; None after `timeout`.
    The worker that asks the engine for it answers through the cache."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = code_get(session_id=session_id, kind="pair_code")
        if code is not None and code.get("stored_at", 0) >= since:
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


def code_image(code: dict[str, Any]) -> str:
    """A cached QR code's image, drawn the first time it is asked for and kept in the cache under
    the code's text for as long as the code is valid (many viewers, one drawing)."""
    key = "qr-image:" + hashlib.sha256(code["code"].encode()).hexdigest()
    image = cache.get(key)
    if image is None:
        image = qr_image(code["code"])
        cache.set(key, image, timeout=max(1, int(code["expires_at"] - time.time())))
    return image


class QrNotAvailable(Conflict):
    code = "qr_not_available"


def qr_current(*, session_id: object, status: str) -> dict[str, Any]:
    """The session's current QR code (the API's); QrNotAvailable when it shows none (it is not
    linking, or is linked already), ServiceUnavailable when the cache is down."""
    try:
        current = code_get(session_id=session_id, kind="qr")
    except Exception as exc:
        raise ServiceUnavailable("The cache is unavailable.", code="cache_unavailable") from exc
    if current is None:
        raise QrNotAvailable(f"The session has no QR code now (status {status}).")
    return current
