"""Webhook endpoints: where tenants want their events (gateway/outbox/models.py `Endpoint`).

- which endpoints an event goes to (`endpoints_for`: enabled, the event matches one of its
  patterns, the session is one of its sessions or it takes every session);
- writes: create, change, rotate the secret (the old one keeps signing for an overlap window),
  delete; the test event;
- the URL check: webhooks must be http(s) and brokers nats:// or amqp(s)://, and the host must
  resolve only to public addresses or to networks in WEBHOOK_ALLOWED_NETWORKS (the same guard as
  media URLs). The dispatcher checks again before every request (a name may resolve elsewhere
  later).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import re
import secrets
import uuid
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from gateway.core.errors import ApiError
from gateway.core.urlguard import UrlRefused, address_forbidden, checked_target, resolve
from gateway.outbox import brokers
from gateway.outbox.brokers import BROKER_SCHEMES, DEFAULT_EXCHANGE, DEFAULT_STREAM
from gateway.outbox.models import Endpoint, WebhookDelivery, default_events

__all__ = ["DEFAULT_EXCHANGE", "DEFAULT_STREAM", "default_events"]

# Every event the gateway sends (README, "Webhooks"): patterns must match at least one.
EVENT_TYPES = (
    "session.status",
    "message.status",
    "message.received",
    "message.edited",
    "message.revoked",
    "message.reaction",
    "poll.vote",
    "history.synced",
    "group.joined",
    "group.updated",
    "group.participants",
    "blocklist.changed",
    "presence.update",
    "usage.report",
    "webhook.test",
)
WEBHOOK_SCHEMES = {"http": 80, "https": 443}
# How long a rotated-out secret keeps signing too (the API's default, the admin's always).
DEFAULT_OVERLAP_SECONDS = 86400
_PATTERN = re.compile(r"^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$")
# Headers an endpoint may not set: the signed ones and what HTTP itself decides.
RESERVED_HEADERS = {
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
}


# An endpoint's `sessions`: null (every session) or at least one id. An empty list would route
# nothing, and for scoped keys it would be within every tenant's sessions (the empty set is a
# subset of any): so it is refused wherever endpoints are made.
NO_SESSIONS = "Name at least one session, or leave `sessions` out (null) for every session."


class EndpointInvalid(ApiError):
    def __init__(self, message: str, *, code: str = "endpoint_invalid") -> None:
        super().__init__(message, code=code, status=422)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def kind_of(url: str) -> str:
    """`webhook`, `nats` or `amqp`."""
    return brokers.broker_kind(url) or "webhook"


def matches(patterns: list[str], event_type: str) -> bool:
    return any(fnmatchcase(event_type, pattern) for pattern in patterns)


def endpoints_for(*, session_id: Any, event_type: str) -> list[Endpoint]:
    """The enabled endpoints that want this event of this session."""
    session = str(session_id) if session_id else None
    return [
        endpoint
        for endpoint in _enabled()
        if matches(endpoint.events, event_type)
        and (endpoint.sessions is None or session in endpoint.sessions)
    ]


# The enabled endpoints as this process last read them, with the endpoints' version then.
_known: tuple[tuple[Any, ...], list[Endpoint]] = ((), [])
_VERSION = f"SELECT count(*), max(updated_at) FROM {Endpoint._meta.db_table}"  # noqa: S608


def _enabled() -> list[Endpoint]:
    """The enabled endpoints, read again only when their version changed: how many there are and
    the latest change (every write saves `updated_at`; a delete changes the count). Asked on the
    path of every event, the version is one plain statement, where reading the endpoints through
    the ORM cost a tenth of a message's CPU in a worker."""
    global _known
    with connection.cursor() as cursor:
        cursor.execute(_VERSION)
        version = tuple(cursor.fetchone())
    if _known[0] != version:
        _known = (version, list(Endpoint.objects.filter(enabled=True)))
    return _known[1]


# --- Checks ---------------------------------------------------------------------------------------


def check_patterns(patterns: list[str]) -> list[str]:
    if not patterns:
        raise EndpointInvalid("Give at least one event pattern (`*` for every event).")
    for pattern in patterns:
        if not _PATTERN.match(pattern) or not any(fnmatchcase(t, pattern) for t in EVENT_TYPES):
            raise EndpointInvalid(
                f"{pattern!r} matches no event; events are: {', '.join(EVENT_TYPES)}.",
                code="event_unknown",
            )
    return list(dict.fromkeys(patterns))


def check_session_ids(value: Any) -> list[str] | None:
    """None (every session) or at least one id of an existing session (`[]` is refused:
    NO_SESSIONS)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise EndpointInvalid(NO_SESSIONS)
    try:
        ids = list(dict.fromkeys(str(uuid.UUID(str(v))) for v in value))
    except ValueError:
        raise EndpointInvalid("Sessions are given by their ids.") from None
    # The sessions' table, as the outbox knows it: through its own foreign key.
    sessions: Any = WebhookDelivery._meta.get_field("session").related_model
    known = {str(pk) for pk in sessions.objects.filter(pk__in=ids).values_list("pk", flat=True)}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise EndpointInvalid(f"No such session: {', '.join(unknown)}.", code="session_not_found")
    return ids


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not re.match(r"^[A-Za-z0-9-]{1,64}$", name):
            raise EndpointInvalid(f"{name!r} is not a header name.")
        if name.lower() in RESERVED_HEADERS or brokers.reserved_header(name):
            raise EndpointInvalid(f"The {name} header is the gateway's own.")
        if not isinstance(value, str) or len(value) > 1000 or re.search(r"[\r\n\x00]", value):
            raise EndpointInvalid(f"The {name} header's value is not a valid header value.")
    return headers


def check_secret(value: str) -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 bytes (422)."""
    try:
        raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not value.startswith("whsec_") or not 24 <= len(raw) <= 64:
        raise EndpointInvalid(
            "A secret is `whsec_` and the base64 of 24 to 64 random bytes.", code="secret_invalid"
        )
    return value


def broker_fields(url: str, *, subject: str, stream: str, exchange: str) -> dict[str, str]:
    """A broker endpoint's `stream` and `exchange` as stored (its kind's default when empty,
    empty for the other kind), its names checked (check_broker_names); nothing for a webhook."""
    kind = kind_of(url)
    if kind == "webhook":
        return {}
    stream = (stream or DEFAULT_STREAM) if kind == "nats" else ""
    exchange = (exchange or DEFAULT_EXCHANGE) if kind == "amqp" else ""
    check_broker_names(subject=subject or brokers.DEFAULT_SUBJECT, stream=stream, exchange=exchange)
    return {"stream": stream, "exchange": exchange}


def check_broker_names(*, subject: str, stream: str, exchange: str) -> None:
    """A broker endpoint's subject template, stream and exchange names (422 each)."""
    for check, value, code in (
        (brokers.validate_subject_template, subject, "subject_invalid"),
        (brokers.validate_stream_name, stream, "stream_invalid"),
        (brokers.validate_exchange_name, exchange, "exchange_invalid"),
    ):
        try:
            check(value)
        except ValueError as exc:
            raise EndpointInvalid(str(exc), code=code) from None


def check_url(url: str) -> str:
    """Refuse, before any connection, a URL the gateway would not deliver to (UrlRefused 422)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("url_invalid", "The URL is not valid.") from None
    scheme = parts.scheme.lower()
    if scheme not in WEBHOOK_SCHEMES and scheme not in BROKER_SCHEMES:
        raise UrlRefused("url_scheme", "Endpoints are http(s)://, nats:// or amqp(s):// URLs.")
    allowed = settings.WEBHOOK_ALLOWED_NETWORKS
    if scheme in WEBHOOK_SCHEMES:
        asyncio.run(checked_target(url, allowed=allowed))
        return url
    if not parts.hostname:
        raise UrlRefused("url_invalid", "The URL has no host.")
    asyncio.run(broker_host_checked(parts.hostname, port or BROKER_SCHEMES[scheme]))
    return url


async def broker_host_checked(host: str, port: int) -> None:
    addresses = await resolve(host, port)
    allowed = settings.WEBHOOK_ALLOWED_NETWORKS
    if not addresses or any(address_forbidden(a, allowed) for a in addresses):
        raise UrlRefused("url_forbidden", f"{host} resolves to an address that is not public.")


# --- Writes ---------------------------------------------------------------------------------------


def endpoint_create(
    *,
    url: str,
    events: list[str] | None = None,
    sessions: list[str] | None = None,
    secret: str = "",
    headers: dict[str, str] | None = None,
    enabled: bool = True,
    description: str = "",
    subject: str = brokers.DEFAULT_SUBJECT,
    stream: str = "",
    exchange: str = "",
) -> Endpoint:
    """A new endpoint, its fields checked by the caller (the API's serializer, the admin's form):
    every event when `events` is None, every session when `sessions` is; its secret is generated
    when none is given."""
    return Endpoint.objects.create(
        url=url,
        events=default_events() if events is None else events,
        sessions=sessions,
        secret=secret or new_secret(),
        headers=headers or {},
        enabled=enabled,
        description=description,
        subject=subject,
        stream=stream,
        exchange=exchange,
    )


class Unchanged(enum.Enum):
    """A field endpoint_update leaves as it is (None is a value: `sessions=None`, every session)."""

    UNCHANGED = enum.auto()


UNCHANGED = Unchanged.UNCHANGED


def endpoint_update(
    endpoint: Endpoint,
    *,
    url: str | Unchanged = UNCHANGED,
    events: list[str] | Unchanged = UNCHANGED,
    sessions: list[str] | Unchanged | None = UNCHANGED,
    headers: dict[str, str] | Unchanged = UNCHANGED,
    enabled: bool | Unchanged = UNCHANGED,
    description: str | Unchanged = UNCHANGED,
    subject: str | Unchanged = UNCHANGED,
    stream: str | Unchanged = UNCHANGED,
    exchange: str | Unchanged = UNCHANGED,
) -> Endpoint:
    """The given fields changed (checked by the caller); `enabled=True` also clears why it was
    disabled. Not the secret: that changes only by a rotation (endpoint_rotate_secret)."""
    given = {
        "url": url,
        "events": events,
        "sessions": sessions,
        "headers": headers,
        "enabled": enabled,
        "description": description,
        "subject": subject,
        "stream": stream,
        "exchange": exchange,
    }
    for name, value in given.items():
        if value is not UNCHANGED:
            setattr(endpoint, name, value)
    if enabled is True:
        endpoint.disabled_reason = ""
    endpoint.save()
    return endpoint


def endpoint_rotate_secret(
    endpoint: Endpoint, *, secret: str | None = None, overlap_seconds: int = DEFAULT_OVERLAP_SECONDS
) -> Endpoint:
    """A new secret; the current one keeps signing too (two signatures) for `overlap_seconds`,
    so receivers can switch without refusing a single event."""
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_until = timezone.now() + timedelta(seconds=overlap_seconds)
        endpoint.secret = secret or new_secret()
        endpoint.save()
    return endpoint


def endpoint_test(endpoint: Endpoint) -> dict[str, Any]:
    """A signed `webhook.test` event to this endpoint alone, through the outbox like any other
    (retried, in the deliveries list). It belongs to no session."""
    from gateway.outbox import enqueue_to

    body = {
        "id": str(uuid.uuid4()),
        "event": "webhook.test",
        "occurred_at": timezone.now().isoformat(),
        "sequence": 0,
        "session": None,
        "endpoint": str(endpoint.pk),
    }
    enqueue_to(endpoint, body=body)
    return body
