"""Linking with a pairing code instead of a QR code: the request to the owning worker, and the
wait for its code (it also arrives like a QR code: in the cache, as an event and a webhook)."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.utils import timezone

from gateway.core.errors import Conflict, RateLimited, ServiceUnavailable
from gateway.core.throttling import rate_wait
from sessions_app.models import Session
from sessions_app.services import qr, requests
from sessions_app.states import SessionStatus

# A phone number as WhatsApp wants it for linking: E.164 with its country code.
E164 = r"^\+[1-9][0-9]{6,14}$"


class NotLinking(Conflict):
    """The session is not waiting to be linked (it is linked already, or not running)."""

    code = "not_linking"


class PairCodeUnavailable(ServiceUnavailable):
    """The owning worker gave no pairing code in time."""

    code = "pair_code_unavailable"


class PairCodeRateLimited(RateLimited):
    """Too many pairing codes for this session or number (`PAIR_CODE_RATE`)."""

    def __init__(self, *, wait: float) -> None:
        super().__init__(
            "Too many pairing codes asked for; try again later. "
            f"Expected available in {math.ceil(wait)} seconds.",
            wait=wait,
        )


def session_pair_code(*, session: Session, phone_number: str) -> dict[str, Any]:
    """Ask the owning worker for a pairing code for `phone_number` (linking without a camera) and
    wait for it (`code`, `expires_at` as a Unix time). The code also arrives like a QR code: in the
    cache, as a `session.pair_code` event and webhook.

    At most `PAIR_CODE_RATE` per session and per number: WhatsApp bans numbers that ask for codes
    in bulk, as for number checks. Raises NotLinking, SessionBeingDeleted, PairCodeRateLimited,
    PairCodeUnavailable, CacheUnavailable (the code cannot be read: it still comes as an event
    and a webhook)."""
    if session.status not in (SessionStatus.STARTING, SessionStatus.SCAN_QR, SessionStatus.PAIRING):
        raise NotLinking(f"The session is {session.status}, not waiting to be linked.")
    rate = settings.PAIR_CODE_RATE
    waits = [
        rate_wait(f"pair_code:session:{session.pk}", rate),
        rate_wait(f"pair_code:number:{phone_number}", rate),
    ]
    if any(waits):
        raise PairCodeRateLimited(wait=max(w for w in waits if w))
    before = qr.code_text(session_id=session.pk, kind="pair_code")
    requests._request(session, pair_phone=phone_number, pair_requested_at=timezone.now())
    wait = settings.WORKER_CALL_SECONDS
    code = qr.pair_code_wait(session_id=session.pk, before=before, timeout=wait)
    if code is None:
        raise PairCodeUnavailable("No pairing code came from the worker in time; try again.")
    return code
