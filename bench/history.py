"""History sync and conversations (`make bench`, or `scripts/run_tests.py --run`): how fast a
worker stores the history WhatsApp sends after linking (`history_store`, by batch size, against
a trivial fenced write in the same run), and what listing the conversations costs as the chats
grow (`GET …/chats` is one query whatever their number)."""

from __future__ import annotations

import time
from datetime import timedelta

from fleet import setup_database

MESSAGES = 10_000


def received(n: int, chats: int):
    from django.utils import timezone

    from messaging import services

    chat = f"491510{n % chats:07d}@s.whatsapp.net"
    return services.Received(
        wa_message_id=f"3EBH{n:012d}",
        chat=chat,
        sender=chat,
        type="text",
        text=f"history {n}",
        at=timezone.now() - timedelta(minutes=n),
    )


def held_session():
    from django.utils import timezone

    from sessions_app.models import Session

    return Session.objects.create(
        engine="sandbox",
        status="connected",
        jid="1@s.whatsapp.net",
        lease_epoch=1,
        lease_expires_at=timezone.now() + timedelta(hours=1),
    )


def main() -> None:
    import os

    os.environ.setdefault("HISTORY_SYNC", "full")
    setup_database()
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from messaging import selectors, services
    from sessions_app.services import fenced_lock

    session = held_session()
    started = time.perf_counter()
    for _ in range(200):  # the trivial call: a fenced lock of the session, as each batch takes
        with transaction.atomic():
            fenced_lock(session.pk, 1)
    trivial = (time.perf_counter() - started) / 200

    rows = []
    for batch in (100, 500, 2000):
        session = held_session()
        messages = [received(n, 25) for n in range(MESSAGES)]
        started = time.perf_counter()
        for start in range(0, MESSAGES, batch):
            services.history_store(
                session_id=session.pk, epoch=1, messages=messages[start : start + batch]
            )
        elapsed = time.perf_counter() - started
        per_batch = elapsed / (MESSAGES / batch)
        rows.append(
            f"| {batch} | {MESSAGES / elapsed:,.0f} | {per_batch * 1000:.1f} "
            f"| {per_batch / trivial:,.0f}x |"
        )
    print(f"History sync: {MESSAGES:,} messages, PostgreSQL on this machine\n")
    print("| batch | messages/s | ms per batch | batch / trivial fenced write |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\n(trivial fenced write: {trivial * 1000:.2f} ms)\n")

    rows = []
    for chats in (25, 1000):
        session = held_session()
        services.history_store(
            session_id=session.pk, epoch=1, messages=[received(n, chats) for n in range(MESSAGES)]
        )
        runs = 20
        started = time.perf_counter()
        for _ in range(runs):
            with CaptureQueriesContext(connection) as queries:
                page = list(selectors.chats_list(session=session)[:50])
                selectors.chats_details(session=session, rows=page)
        per_page = (time.perf_counter() - started) / runs
        rows.append(
            f"| {chats:,} | {per_page * 1000:.1f} | {len(queries)} | {per_page / trivial:,.0f}x |"
        )
    print(f"Conversations: the first page of 50 chats, over {MESSAGES:,} messages\n")
    print("| chats | ms per page | queries | page / trivial fenced write |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
