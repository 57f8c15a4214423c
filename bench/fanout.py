"""The outbox's fan-out (`make bench`, or `scripts/run_tests.py --run`): what writing one event
costs as the webhook endpoints grow (`outbox_event` in its transaction: the session's next
sequence, the event log row, one delivery per matching endpoint), against a trivial fenced write
in the same run."""

from __future__ import annotations

import time
from datetime import timedelta

from fleet import setup_database

EVENTS = 500


def main() -> None:
    setup_database()
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from gateway.outbox import endpoints
    from gateway.outbox.models import Endpoint
    from sessions_app.events import outbox_event
    from sessions_app.models import Session
    from sessions_app.services import fenced_lock

    session = Session.objects.create(
        engine="sandbox",
        status="connected",
        lease_epoch=1,
        lease_expires_at=timezone.now() + timedelta(hours=1),
    )
    started = time.perf_counter()
    for _ in range(EVENTS):
        with transaction.atomic():
            fenced_lock(session.pk, 1)
    trivial = (time.perf_counter() - started) / EVENTS

    rows = []
    for count, wanting in ((0, 0), (1, 1), (10, 10), (50, 50), (50, 5)):
        Endpoint.objects.all().delete()
        for n in range(count):
            # `wanting` of them take this event; the others want another type.
            events = ["message.*"] if n < wanting else ["group.*"]
            endpoints.endpoint_create(url=f"http://127.0.0.1:9/{n}", events=events)
        started = time.perf_counter()
        for n in range(EVENTS):
            with transaction.atomic():
                outbox_event(session, "message.received", "/api/webhooks/message-received", n=n)
        per_event = (time.perf_counter() - started) / EVENTS
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            outbox_event(session, "message.received", "/api/webhooks/message-received", n=0)
        rows.append(
            f"| {count} | {wanting} | {per_event * 1000:.2f} | {len(queries)} "
            f"| {per_event / trivial:.1f}x |"
        )
    print(f"Outbox fan-out: {EVENTS} events per row, PostgreSQL on this machine\n")
    print("| endpoints | wanting the event | ms per event | queries | event / trivial |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\n(trivial fenced write: {trivial * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
