"""The outbox: every event enters through `enqueue()`, in the transaction that made the change it
reports (so no event is lost and none is invented by a rollback).

- `models`: the event log (`Event`), the destinations (`Endpoint`) and one delivery per event and
  destination (`WebhookDelivery`);
- `endpoints`: which endpoints want an event, and their writes and checks;
- `deliveries`: claims of due rows, their outcomes (delivered, retried, dead), replays, and the
  signed request (Standard Webhooks headers);
- `breaker`: a circuit breaker per destination, shared through the cache;
- `stream`: the live event stream (`/ws/events/`), resumable from the event log;
- `backend`: the backend client (registration and heartbeat).

The loop that delivers the rows is the runtime's dispatcher (workers/runtime/dispatcher.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.sql import InsertQuery

from gateway.core import tracing
from gateway.core.wake import WEBHOOKS, wake, webhook_rows

if TYPE_CHECKING:
    from gateway.outbox.models import Endpoint


def enqueue(
    *, session_id: uuid.UUID, events: Sequence[tuple[dict[str, Any], str, int, str]]
) -> None:
    """Write events of one session, `(body, path, sequence, trace context)` each (a body is an
    event with its `id` and `event`), in their order: once each in the event log, and once for
    each destination that wants it — the built-in backend at `path` under BACKEND_URL (when set)
    and every matching endpoint. One statement for all of them on PostgreSQL (the event log rows,
    their deliveries and one NOTIFY). Wakes the dispatchers and the live streams on commit. Call
    inside the transaction that made the change.

    The trace context is the one the deliveries join: the current span's where one is, else the
    stored one of what caused the event (a message's)."""
    from gateway.outbox import stream
    from gateway.outbox.brokers import redact
    from gateway.outbox.endpoints import endpoints_for
    from gateway.outbox.models import Event, WebhookDelivery

    logged, rows = [], []
    wanted: dict[str, list[Endpoint]] = {}
    for body, path, sequence, trace in events:
        event = {
            "event_id": body["id"],
            "event_type": body["event"],
            "payload": body,
            "session_id": session_id,
            "sequence": sequence,
            "trace_context": trace,
        }
        logged.append(Event(**event))
        if body["event"] not in wanted:
            wanted[body["event"]] = endpoints_for(session_id=session_id, event_type=body["event"])
        rows += [
            WebhookDelivery(endpoint=endpoint, target=redact(endpoint.url), **event)
            for endpoint in wanted[body["event"]]
        ]
        if settings.BACKEND_URL:
            rows.append(WebhookDelivery(target=settings.BACKEND_URL + path, **event))
    destinations = list(dict.fromkeys(str(r.endpoint_id) if r.endpoint_id else None for r in rows))
    if connection.vendor == "postgresql":
        _insert_at_once(logged, rows, webhook_rows(session_id, destinations))
    else:
        Event.objects.bulk_create(logged)
        if rows:
            WebhookDelivery.objects.bulk_create(rows)
            wake(WEBHOOKS, webhook_rows(session_id, destinations))
    bodies = [body for body, *_ in events]
    transaction.on_commit(lambda: stream.publish(*bodies))


def _insert_at_once(logged: Sequence[Model], rows: Sequence[Model], notify: str) -> None:
    """The events, their deliveries and their NOTIFY in one statement (INSERTs in a WITH, as
    Django would write each): one round trip where there were three per event, on the path of
    every message."""
    parts: list[str] = []
    params: list[Any] = []
    for objects in (logged, rows):
        if not objects:
            continue
        model = type(objects[0])
        query = InsertQuery(model)
        query.insert_values(
            [f for f in model._meta.concrete_fields if not f.primary_key], list(objects)
        )
        [(sql, values)] = query.get_compiler(connection=connection).as_sql()
        parts.append(f"i{len(parts)} AS ({sql})")
        params.extend(values)
    final = "SELECT 1"
    if rows:
        final, params = "SELECT pg_notify(%s, %s)", [*params, WEBHOOKS, notify]
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} {final}", params)


def enqueue_to(endpoint: Endpoint, *, body: dict[str, Any]) -> None:
    """One event for one endpoint only (its test event): not in the event log."""
    from gateway.outbox.brokers import redact
    from gateway.outbox.models import WebhookDelivery

    WebhookDelivery.objects.create(
        endpoint=endpoint,
        target=redact(endpoint.url),
        event_id=body["id"],
        event_type=body["event"],
        payload=body,
        sequence=body["sequence"],
        trace_context=tracing.context(),
    )
    wake(WEBHOOKS)
