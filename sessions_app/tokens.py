"""Short-lived tokens that let a browser watch one session (`POST /sessions/{id}/ws-token`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing

SALT = "whatsapp-gateway.ws-token"


@dataclass(frozen=True)
class WsToken:
    session_id: str
    expires_at: float  # epoch seconds


def ws_token_make(session_id: object) -> str:
    expires_at = int(time.time()) + settings.WS_TOKEN_SECONDS
    return signing.TimestampSigner(salt=SALT).sign_object({"s": str(session_id), "e": expires_at})


def ws_token_read(token: str) -> WsToken | None:
    """What a token is for and until when; None when it is tampered with or expired."""
    try:
        value = signing.TimestampSigner(salt=SALT).unsign_object(
            token, max_age=settings.WS_TOKEN_SECONDS
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("e"), int):
        return None
    if value["e"] <= time.time():
        return None
    return WsToken(session_id=str(value.get("s")), expires_at=value["e"])


def ws_token_session(token: str) -> str | None:
    """The session a token is for, or None when it is tampered with or expired."""
    read = ws_token_read(token)
    return read.session_id if read else None
