"""The webhook outbox: every event for the backend enters through `enqueue()`, in the transaction
that made the change it reports (so no event is lost and none is invented by a rollback).

- `models`: one row per event and target (`WebhookDelivery`);
- `deliveries`: claims of due rows, their outcomes (delivered, retried, dead), replays, and the
  signed request (Standard Webhooks headers);
- `breaker`: a circuit breaker per backend, shared through the cache;
- `backend`: the backend client (registration and heartbeat).

The loop that posts the rows is the runtime's dispatcher (workers/runtime/dispatcher.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings

from gateway.core.wake import WEBHOOKS, wake


def enqueue(*, body: dict[str, Any], path: str, session_id: uuid.UUID, sequence: int) -> None:
    """Write `body` (an event with its `id` and `event`) for the backend at `path`, as event
    `sequence` of its session, and wake the dispatchers on commit. Nothing when no backend is
    configured (BACKEND_URL). Call inside the transaction that made the change."""
    from gateway.outbox.models import WebhookDelivery

    if not settings.BACKEND_URL:
        return
    WebhookDelivery.objects.create(
        event_id=body["id"],
        event_type=body["event"],
        target=settings.BACKEND_URL + path,
        payload=body,
        session_id=session_id,
        sequence=sequence,
    )
    wake(WEBHOOKS)
