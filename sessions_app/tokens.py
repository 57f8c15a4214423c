"""Short-lived tokens that let a browser watch one session (`POST /sessions/{id}/ws-token`)."""

from __future__ import annotations

from django.conf import settings
from django.core import signing

SALT = "whatsapp-gateway.ws-token"


def ws_token_make(session_id: object) -> str:
    return signing.TimestampSigner(salt=SALT).sign_object({"s": str(session_id)})


def ws_token_session(token: str) -> str | None:
    """The session a token is for, or None when it is tampered with or older than
    WS_TOKEN_SECONDS."""
    try:
        value = signing.TimestampSigner(salt=SALT).unsign_object(
            token, max_age=settings.WS_TOKEN_SECONDS
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return value.get("s") if isinstance(value, dict) else None
