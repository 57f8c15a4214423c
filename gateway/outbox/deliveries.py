"""Webhook delivery, the database side: claiming due outbox rows, recording what happened, and
the Standard Webhooks headers. The dispatcher (workers/runtime/dispatcher.py) does the HTTP.

Claims: due `pending` rows that are the oldest pending row of their session (so a session's
events arrive in order), `FOR UPDATE SKIP LOCKED`, marked `claimed_until` and committed at once:
no transaction stays open during a request, and a crashed dispatcher's claims simply run out
(the event is then delivered again, with the same `webhook-id`).
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from gateway.core.usage import usage_add
from gateway.core.wake import WEBHOOKS, wake
from gateway.outbox.models import DeliveryStatus, Endpoint, WebhookDelivery

logger = logging.getLogger(__name__)
P = DeliveryStatus
MAX_BACKOFF_SECONDS = 3600
RESPONSE_KEEP = 2000


# --- The request ----------------------------------------------------------------------------------


def body_of(delivery: WebhookDelivery) -> str:
    return json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)


def signed_headers(
    event_id: str,
    body: str,
    at: datetime | None = None,
    *,
    secrets: tuple[str, ...] | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> dict[str, str]:
    """Standard Webhooks headers: one `v1,` signature per secret (two during a rotation). The
    built-in backend's secrets (`secrets` None) are WEBHOOK_SECRET and WEBHOOK_SECRET_PREVIOUS,
    with the backend token; an endpoint's are its own, with its own headers (`extra`), which
    never replace the signed ones."""
    from standardwebhooks.webhooks import Webhook

    at = at or timezone.now()
    builtin = secrets is None
    if secrets is None:
        secrets = tuple(s for s in (settings.WEBHOOK_SECRET, settings.WEBHOOK_SECRET_PREVIOUS) if s)
    headers = {name.lower(): value for name, value in extra}
    headers.update(
        {
            "content-type": "application/json",
            "user-agent": f"whatsapp-gateway/{settings.VERSION}",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(at.timestamp())),
        }
    )
    if secrets:
        headers["webhook-signature"] = " ".join(
            Webhook(secret).sign(msg_id=event_id, timestamp=at, data=body) for secret in secrets
        )
    if builtin and settings.BACKEND_TOKEN:
        headers["authorization"] = f"Bearer {settings.BACKEND_TOKEN}"
    return headers


# --- Claims ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """An endpoint as a claim carries it (the built-in backend is None)."""

    id: str
    url: str
    secrets: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    subject: str
    stream: str
    exchange: str

    @classmethod
    def of(cls, endpoint: Endpoint, now: datetime) -> Destination:
        secrets = [endpoint.secret]
        if endpoint.previous_secret and (
            endpoint.previous_secret_until is None or endpoint.previous_secret_until > now
        ):
            secrets.append(endpoint.previous_secret)
        return cls(
            id=str(endpoint.pk),
            url=endpoint.url,
            secrets=tuple(secrets),
            headers=tuple(sorted((endpoint.headers or {}).items())),
            subject=endpoint.subject,
            stream=endpoint.stream,
            exchange=endpoint.exchange,
        )


@dataclass(frozen=True)
class Claim:
    id: int
    event_id: str
    event_type: str
    session_id: str | None
    target: str
    body: str
    attempts: int
    created_at: datetime
    destination: Destination | None = None
    external_id: str | None = None  # the session's, for broker subjects
    trace_context: str = ""  # what the delivery's span is a child of


def deliveries_claim(
    *, limit: int, hold_seconds: float, busy: frozenset[str] = frozenset()
) -> list[Claim]:
    """Claim up to `limit` due deliveries, each the oldest pending one of its session for its
    destination, none for the endpoints in `busy` (those with as many requests under way as one
    endpoint may have). Stale QR events met on the way are marked superseded instead."""
    now = timezone.now()
    pending = WebhookDelivery.objects.filter(status=P.PENDING)
    if connection.vendor == "postgresql":
        # The oldest pending row of each (destination, session), read off the index of pending
        # rows in one pass (DISTINCT ON), then locked by primary key: far cheaper than asking,
        # for every candidate, whether an older one is pending.
        heads = pending.filter(
            pk__in=list(
                pending.order_by("endpoint_id", "session_id", "sequence", "id")
                .distinct("endpoint_id", "session_id")
                .values_list("pk", flat=True)
            )
        )
    else:  # SQLite: one process, few rows
        first: dict[tuple, int] = {}
        for pk, *key in pending.order_by("sequence", "id").values_list(
            "pk", "endpoint_id", "session_id"
        ):
            first.setdefault(tuple(key), pk)
        heads = pending.filter(pk__in=list(first.values()))
    if busy:
        heads = heads.exclude(endpoint_id__in=list(busy))
    with transaction.atomic():
        rows = list(
            heads.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(next_attempt_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .order_by("next_attempt_at", "id")[:limit]
        )
        claims, stale = [], []
        for row in rows:
            if _superseded(row):
                stale.append(row.pk)
                continue
            claims.append(
                Claim(
                    row.pk,
                    str(row.event_id),
                    row.event_type,
                    str(row.session_id) if row.session_id else None,
                    row.target,
                    body_of(row),
                    row.attempts,
                    row.created_at,
                    Destination.of(row.endpoint, now) if row.endpoint else None,
                    (row.payload.get("session") or {}).get("external_id"),
                    row.trace_context,
                )
            )
        if stale:
            WebhookDelivery.objects.filter(pk__in=stale).update(status=P.SUPERSEDED)
        WebhookDelivery.objects.filter(pk__in=[c.id for c in claims]).update(
            claimed_until=now + timedelta(seconds=hold_seconds)
        )
        if stale:
            wake(WEBHOOKS)  # the next event of those sessions is free now
    return claims


def _superseded(row: WebhookDelivery) -> bool:
    """A QR (or pairing code) event with a newer status event of its session behind it (for the
    same destination)."""
    if row.event_type != "session.status" or not (
        row.payload.get("qr") or row.payload.get("pair_code")
    ):
        return False
    # A deleted session's rows have lost their session: they are compared among themselves.
    same_session = (
        Q(session__isnull=True) if row.session_id is None else Q(session_id=row.session_id)
    )
    same_destination = (
        Q(endpoint__isnull=True) if row.endpoint_id is None else Q(endpoint_id=row.endpoint_id)
    )
    return WebhookDelivery.objects.filter(
        same_session,
        same_destination,
        event_type="session.status",
        sequence__gt=row.sequence,
    ).exists()


# --- Outcomes -------------------------------------------------------------------------------------


def delivery_succeeded(
    *, delivery_id: int, status_code: int | None, response: str, session_id: str | None = None
) -> None:
    """Delivered; counted in the session's usage (`session_id`) once."""
    with transaction.atomic():
        updated = WebhookDelivery.objects.filter(pk=delivery_id, status=P.PENDING).update(
            status=P.DELIVERED,
            delivered_at=timezone.now(),
            attempts=F("attempts") + 1,
            last_status_code=status_code,
            last_response=response[:RESPONSE_KEEP],
            last_error="",
            claimed_until=None,
        )
        if updated and session_id:
            usage_add(uuid.UUID(session_id), webhooks_delivered=1)
    # Every dispatcher may take the session's next event now (measured: without this, a second
    # dispatcher only finds it at its next poll and steady-state latency grows sevenfold).
    wake(WEBHOOKS)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, (parsedate_to_datetime(value) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(1 h, 2^attempts s)]."""
    return random.uniform(0, min(MAX_BACKOFF_SECONDS, 2.0**attempts))  # noqa: S311


def delivery_failed(
    *,
    delivery_id: int,
    created_at: datetime,
    attempts: int,
    error: str,
    status_code: int | None = None,
    response: str = "",
    retry_after: float | None = None,
    session_id: str | None = None,
) -> str:
    """After a non-2xx answer or a network error: retried later, or `dead` once past
    WEBHOOK_MAX_AGE (counted as failed in the session's usage). Returns the new status."""
    now = timezone.now()
    wait = max(backoff_seconds(attempts + 1), retry_after or 0)
    next_at = now + timedelta(seconds=min(wait, MAX_BACKOFF_SECONDS))
    dead = next_at > created_at + timedelta(seconds=settings.WEBHOOK_MAX_AGE)
    with transaction.atomic():
        updated = WebhookDelivery.objects.filter(pk=delivery_id, status=P.PENDING).update(
            status=P.DEAD if dead else P.PENDING,
            attempts=attempts + 1,
            next_attempt_at=next_at,
            last_status_code=status_code,
            last_error=error[:2000],
            last_response=response[:RESPONSE_KEEP],
            claimed_until=None,
        )
        if dead and updated and session_id:
            usage_add(uuid.UUID(session_id), webhooks_failed=1)
    if dead:
        logger.error("webhook dead after %s attempts: %s", attempts + 1, error)
        wake(WEBHOOKS)
    return P.DEAD if dead else P.PENDING


def target_gone(*, claim: Claim, response: str) -> int:
    """410 Gone: the destination says it is gone for good. Everything pending for it is marked
    dead (replayable once it is fixed), an endpoint is disabled, and operators are alerted."""
    gone = "the target answered 410 Gone; deliveries to it stopped"
    with transaction.atomic():
        if claim.destination is None:
            for_it = WebhookDelivery.objects.filter(endpoint__isnull=True, target=claim.target)
        else:
            for_it = WebhookDelivery.objects.filter(endpoint_id=claim.destination.id)
            Endpoint.objects.filter(pk=claim.destination.id).update(
                enabled=False, disabled_reason=f"{gone} ({timezone.now().isoformat()})"
            )
        pending = for_it.select_for_update().filter(status=P.PENDING)
        per_session = Counter(s for s in pending.values_list("session_id", flat=True) if s)
        updated = pending.update(
            status=P.DEAD, last_status_code=410, last_error=gone, claimed_until=None
        )
        for session, count in per_session.items():
            usage_add(session, webhooks_failed=count)
        WebhookDelivery.objects.filter(pk=claim.id).update(
            attempts=F("attempts") + 1, last_response=response[:RESPONSE_KEEP]
        )
    logger.critical(
        "webhook target %s answered 410 Gone: %s pending deliveries stopped%s (replay them once "
        "it is fixed)",
        claim.target,
        updated,
        "" if claim.destination is None else " and its endpoint disabled",
    )
    return updated


def delivery_postponed(*, delivery_id: int, until: datetime) -> None:
    """The target's circuit is open: not attempted, not counted; due again when it may probe."""
    WebhookDelivery.objects.filter(pk=delivery_id, status=P.PENDING).update(
        next_attempt_at=until, claimed_until=None
    )


def deliveries_release(*, ids: list[int]) -> None:
    """Claimed but not attempted (the dispatcher had no room for them): free for the next
    claim, nothing counted."""
    WebhookDelivery.objects.filter(pk__in=ids, status=P.PENDING).update(claimed_until=None)
    wake(WEBHOOKS)


def deliveries_replay(*, ids: list[Any]) -> int:
    """Deliver again (dead, superseded or even delivered ones), with the same `webhook-id`."""
    with transaction.atomic():
        count = WebhookDelivery.objects.filter(pk__in=ids).update(
            status=P.PENDING, next_attempt_at=timezone.now(), claimed_until=None
        )
        wake(WEBHOOKS)
    return count
