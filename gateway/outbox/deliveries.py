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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, Window
from django.db.models.functions import Now
from django.utils import timezone

from gateway.core import dbclock
from gateway.core.usage import usage_add, usage_add_many
from gateway.core.wake import WEBHOOKS, wake
from gateway.outbox.models import DeliveryStatus, Endpoint, WebhookDelivery

logger = logging.getLogger(__name__)
P = DeliveryStatus
MAX_BACKOFF_SECONDS = 3600
RESPONSE_KEEP = 2000
# The 4xx answers that ask for the event again later (Request Timeout, Conflict, Too Early, Too
# Many Requests): retried as long as any failure, never a rejection (`Outcome.rejected`).
ASK_AGAIN = frozenset({408, 409, 425, 429})


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
    never replace the signed ones. Stamped by the database's clock (`dbclock`) unless told."""
    from standardwebhooks.webhooks import Webhook

    at = at or dbclock.now()
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
    destination: Destination | None = None
    external_id: str | None = None  # the session's, for broker subjects
    trace_context: str = ""  # what the delivery's span is a child of


def deliveries_claim(
    *,
    limit: int,
    hold_seconds: float,
    per_endpoint: int | None = None,
    room: Mapping[str, int] | None = None,
    per_session: int = 1,
) -> list[list[Claim]]:
    """Claim the due deliveries of up to `limit` sessions for a destination: each session's
    oldest pending one, then up to `per_session - 1` of those that follow it, in sequence order,
    as far as they are due and free. One list per session and destination, in the order they
    must be sent (each only once the one before it was delivered). Stale QR events met on the
    way are marked superseded instead.

    `per_endpoint`: how many sessions' chains one endpoint may get, unless `room` says otherwise
    for it (by endpoint id; 0: none); the built-in backend has no such bound. What is past it is
    left unclaimed, not claimed and given back."""
    room = room or {}
    dbclock.refresh()  # what the signatures' timestamps are stamped by
    now = timezone.now()
    pending = WebhookDelivery.objects.filter(status=P.PENDING)
    if connection.vendor == "postgresql":
        # The oldest pending row of each (destination, session), read off the index of pending
        # rows in one pass (DISTINCT ON), with how many are pending behind it, then locked by
        # primary key: far cheaper than asking, for every candidate, whether an older one is
        # pending.
        behind = Window(Count("id"), partition_by=[F("endpoint_id"), F("session_id")])
        first = dict(
            pending.annotate(pending_here=behind)
            .order_by("endpoint_id", "session_id", "sequence", "id")
            .distinct("endpoint_id", "session_id")
            .values_list("pk", "pending_here")
        )
    else:  # SQLite: one process, few rows
        firsts: dict[tuple, int] = {}
        counts: Counter[int] = Counter()
        for pk, *key in pending.order_by("sequence", "id").values_list(
            "pk", "endpoint_id", "session_id"
        ):
            counts[firsts.setdefault(tuple(key), pk)] += 1
        first = dict(counts)
    heads = pending.filter(pk__in=list(first))
    if full := [endpoint for endpoint, n in room.items() if n <= 0]:
        heads = heads.exclude(endpoint_id__in=full)
    # By the database's clock, never this process's: a dispatcher whose clock runs minutes ahead
    # would take the claims of others while their requests are under way (two of a session's
    # events in flight at once), one whose clock lags would write claims already run out.
    free = Q(next_attempt_at__lte=Now()) & (
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=Now())
    )
    with transaction.atomic():
        rows = list(
            heads.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(free)
            .order_by("next_attempt_at", "id")[:limit]
        )
        if per_endpoint is not None or room:
            left = dict(room)
            within = []
            for row in rows:
                if row.endpoint_id is not None:
                    endpoint = str(row.endpoint_id)
                    left.setdefault(endpoint, len(rows) if per_endpoint is None else per_endpoint)
                    if left[endpoint] <= 0:
                        continue  # unclaimed: its lock ends with the transaction
                    left[endpoint] -= 1
                within.append(row)
            rows = within
        chains = [[row] for row in rows]
        if per_session > 1 and any(first[row.pk] > 1 for row in rows):
            chains = _followed(rows, per_session - 1, free, [first[row.pk] > 1 for row in rows])
        claims, stale = [], []
        for chain in chains:
            kept = []
            for row in chain:
                if _superseded(row):
                    stale.append(row.pk)
                else:
                    kept.append(_claim_of(row, now))
            if kept:
                claims.append(kept)
        if stale:
            WebhookDelivery.objects.filter(pk__in=stale).update(status=P.SUPERSEDED)
        WebhookDelivery.objects.filter(pk__in=[c.id for chain in claims for c in chain]).update(
            claimed_until=Now() + timedelta(seconds=hold_seconds)
        )
        if stale:
            wake(WEBHOOKS)  # the next event of those sessions is free now
    return claims


def _followed(
    heads: list[WebhookDelivery], count: int, free: Q, followed: list[bool]
) -> list[list[WebhookDelivery]]:
    """Each locked head with up to `count` of the pending rows that follow it in its session for
    its destination (read in one query, a UNION ALL of one index range per head that has pending
    rows behind it: `followed`), locked too and cut at the first one that is not due, not free,
    or locked by another. (A deleted session's rows, which have lost their session, go one at a
    time.)"""
    pending = WebhookDelivery.objects.filter(status=P.PENDING)
    ranges = [
        pending.filter(
            Q(endpoint__isnull=True)
            if head.endpoint_id is None
            else Q(endpoint_id=head.endpoint_id),
            session_id=head.session_id,
            sequence__gt=head.sequence,
        )
        .order_by("sequence", "id")
        .values_list("pk", "endpoint_id", "session_id", "sequence")[:count]
        for head, more in zip(heads, followed, strict=True)
        if more and head.session_id is not None
    ]
    if not ranges:
        return [[head] for head in heads]
    if connection.features.supports_slicing_ordering_in_compound:
        candidates = list(ranges[0].union(*ranges[1:], all=True))
    else:  # SQLite
        candidates = [row for query in ranges for row in query]
    locked = {
        row.pk: row
        for row in pending.filter(pk__in=[c[0] for c in candidates])
        .select_for_update(skip_locked=True, of=("self",))
        .select_related("endpoint")
        .filter(free)
    }
    following: dict[tuple, list[tuple]] = {}
    for pk, endpoint, session, sequence in candidates:
        following.setdefault((endpoint, session), []).append((sequence, pk))
    chains = []
    for head in heads:
        chain = [head]
        if head.session_id is not None:
            for _, pk in sorted(following.get((head.endpoint_id, head.session_id), [])):
                if pk not in locked:
                    break
                chain.append(locked[pk])
        chains.append(chain)
    return chains


def _claim_of(row: WebhookDelivery, now: datetime) -> Claim:
    return Claim(
        row.pk,
        str(row.event_id),
        row.event_type,
        str(row.session_id) if row.session_id else None,
        row.target,
        body_of(row),
        row.attempts,
        Destination.of(row.endpoint, now) if row.endpoint else None,
        (row.payload.get("session") or {}).get("external_id"),
        row.trace_context,
    )


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


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: delivered, or not, with the error and the answer. `breaker_ok`:
    not delivered, but the target answered (a 4xx, a refused address, a broker's unroutable):
    no sign that it is down, a success for its circuit breaker."""

    claim: Claim
    delivered: bool
    status_code: int | None = None
    response: str = ""
    error: str = ""
    retry_after: float | None = None
    breaker_ok: bool = False

    @property
    def rejected(self) -> bool:
        """The receiver refused this very event: a 4xx other than those that ask again
        (`ASK_AGAIN`). Sent again unchanged it is likely refused again, and its session's later
        events wait behind it (`deliveries_record` gives it up). 410 Gone never gets here
        (`target_gone`), and a broker answers no HTTP code: its unroutable is not a rejection
        (consumers may bind their queues later)."""
        code = self.status_code
        return (
            not self.delivered and code is not None and 400 <= code < 500 and code not in ASK_AGAIN
        )


def deliveries_record(outcomes: list[Outcome]) -> dict[int, str]:
    """Record many attempts' outcomes in one statement (an UPDATE … FROM (VALUES …)) and one
    transaction, with their usage. Delivered ones are counted in their session's usage; the
    others are retried later with backoff (honouring `retry_after`), or `dead` (counted as
    failed) once rejected for good (`_rejected_for_good`) or when their retry would come past
    WEBHOOK_MAX_AGE. Only rows still pending are touched. Returns the new status of each row
    written. When the retry is due and how old the event is are judged by the database's clock
    (that of the claims), so a dispatcher whose clock is minutes wrong waits what it must.

    Until this commits the rows stay pending and claimed: a dispatcher that dies first leaves
    them to run out and be delivered again (at least once), and no session's next event can be
    claimed before its current one is recorded (in order)."""
    rows: list[tuple[int, str, float | None, int | None, str, str]] = []
    errors: dict[int, str] = {}  # of those not delivered, by id
    for outcome in outcomes:
        claim = outcome.claim
        response = outcome.response[:RESPONSE_KEEP]
        if outcome.delivered:
            rows.append((claim.id, P.DELIVERED, None, outcome.status_code, "", response))
            continue
        wait = max(backoff_seconds(claim.attempts + 1), outcome.retry_after or 0)
        reason = _rejected_for_good(outcome)
        status = P.PENDING if reason is None else P.DEAD
        error = errors[claim.id] = (reason or outcome.error)[:2000]
        rows.append(
            (claim.id, status, min(wait, MAX_BACKOFF_SECONDS), outcome.status_code, error, response)
        )
    if not rows:
        return {}
    with transaction.atomic():
        written = _write_outcomes(rows)
        sessions = {c.claim.id: c.claim.session_id for c in outcomes}
        figures: dict[uuid.UUID, Counter[str]] = {}
        for pk, now_status in written.items():
            session = sessions[pk]
            if session and now_status != P.PENDING:
                counter = figures.setdefault(uuid.UUID(session), Counter())
                delivered = now_status == P.DELIVERED
                counter["webhooks_delivered" if delivered else "webhooks_failed"] += 1
        usage_add_many(figures)
    for outcome in outcomes:
        if written.get(outcome.claim.id) == P.DEAD:
            logger.error(
                "webhook dead after %s attempts: %s",
                outcome.claim.attempts + 1,
                errors[outcome.claim.id],
            )
    if any(status != P.PENDING for status in written.values()):
        # Every dispatcher may take those sessions' next events now (measured: without this, a
        # second dispatcher only finds them at its next poll).
        wake(WEBHOOKS)
    return written


def _rejected_for_good(outcome: Outcome) -> str | None:
    """Why a failed attempt makes its delivery `dead` whatever its age (its `last_error`), or
    None.

    Rejected (`Outcome.rejected`) on its WEBHOOK_REJECTED_ATTEMPTS-th attempt or later (0:
    never): retrying it for hours would hold up every later event of its session (in order per
    session and destination), so it is given up and those flow; once the receiver accepts it, a
    replay sends it with the same `webhook-id`. The attempts are simply the row's `attempts`: the
    earlier ones may have failed otherwise (a timeout, a 503), which only gives it up sooner. A
    replayed delivery keeps its attempts, so a replay that is rejected again is dead again at
    once, not held for another round."""
    attempts = outcome.claim.attempts + 1
    final = settings.WEBHOOK_REJECTED_ATTEMPTS
    if outcome.rejected and final and attempts >= final:
        return (
            f"rejected: HTTP {outcome.status_code} on {attempts} attempts; replay once the "
            "receiver accepts it"
        )
    return None


def _write_outcomes(rows: list[tuple]) -> dict[int, str]:
    """(id, status, seconds until the retry, status code, error, response) per row, written where
    the row is still pending, by the database's clock: delivered now, retried that many seconds
    from now, or dead when that is past WEBHOOK_MAX_AGE; {id: status} of those written."""
    if connection.vendor != "postgresql":  # SQLite: one process on one machine, few rows
        now, max_age = timezone.now(), timedelta(seconds=settings.WEBHOOK_MAX_AGE)
        made = dict(
            WebhookDelivery.objects.filter(pk__in=[row[0] for row in rows]).values_list(
                "pk", "created_at"
            )
        )
        written = {}
        for pk, status, wait, code, error, response in rows:
            fields: dict[str, Any] = {}
            if wait is not None:
                fields["next_attempt_at"] = next_at = now + timedelta(seconds=wait)
                if pk in made and next_at > made[pk] + max_age:
                    status = P.DEAD
            if WebhookDelivery.objects.filter(pk=pk, status=P.PENDING).update(
                status=status,
                delivered_at=now if status == P.DELIVERED else None,
                attempts=F("attempts") + 1,
                last_status_code=code,
                last_error=error,
                last_response=response,
                claimed_until=None,
                **fields,
            ):
                written[pk] = status
        return written
    table = connection.ops.quote_name(WebhookDelivery._meta.db_table)
    values = ", ".join(
        ["(%s::bigint, %s::varchar, %s::double precision, %s::integer, %s, %s)"] * len(rows)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS d SET "  # noqa: S608
            "status = CASE WHEN v.status = %s AND now() + v.wait * interval '1 second' "
            "> d.created_at + %s * interval '1 second' THEN %s ELSE v.status END, "
            "delivered_at = CASE WHEN v.status = %s THEN now() END, "
            "next_attempt_at = COALESCE(now() + v.wait * interval '1 second', d.next_attempt_at), "
            "attempts = d.attempts + 1, last_status_code = v.code, last_error = v.error, "
            "last_response = v.response, claimed_until = NULL "
            f"FROM (VALUES {values}) AS v(id, status, wait, code, error, response) "
            "WHERE d.id = v.id AND d.status = %s RETURNING d.id, d.status",
            [
                P.PENDING,
                settings.WEBHOOK_MAX_AGE,
                P.DEAD,
                P.DELIVERED,
                *(v for row in rows for v in row),
                P.PENDING,
            ],
        )
        return dict(cursor.fetchall())


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
                enabled=False,
                disabled_reason=f"{gone} ({timezone.now().isoformat()})",
                updated_at=Now(),  # what tells every process its endpoints changed
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


def deliveries_postpone(*, ids: list[int], seconds: float) -> None:
    """Their target's circuit is open: not attempted, not counted; due again in `seconds` (when
    it may probe), by the database's clock."""
    WebhookDelivery.objects.filter(pk__in=ids, status=P.PENDING).update(
        next_attempt_at=Now() + timedelta(seconds=seconds), claimed_until=None
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
            status=P.PENDING, next_attempt_at=Now(), claimed_until=None
        )
        wake(WEBHOOKS)
    return count
