"""What HISTORY_SYNC keeps of the history WhatsApp sends after linking (the whole path on both
engines, 10,000 messages with live ones flowing, is in tests/system/test_both_engines.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import services
from messaging.models import Message

pytestmark = pytest.mark.django_db
CHAT = "4915123456789@s.whatsapp.net"


def history(days_ago: list[int]) -> list[services.Received]:
    return [
        services.Received(
            wa_message_id=f"3EBH{n}",
            chat=CHAT,
            sender=CHAT,
            type="text",
            text=f"old {n}",
            at=timezone.now() - timedelta(days=days),
        )
        for n, days in enumerate(days_ago)
    ]


@pytest.mark.parametrize(
    ("mode", "stored", "skipped"), [("off", 0, 3), ("recent", 2, 1), ("full", 3, 0)]
)
def test_what_history_sync_keeps(held, settings, mode: str, stored: int, skipped: int) -> None:
    settings.HISTORY_SYNC, settings.HISTORY_RECENT_DAYS = mode, 30
    counts = services.history_store(session_id=held.pk, epoch=3, messages=history([1, 10, 90]))
    assert (counts["stored"], counts["skipped"]) == (stored, skipped)
    rows = Message.objects.filter(session=held, history=True)
    assert rows.count() == stored and all(m.status == "read" for m in rows)


def test_history_never_duplicates_a_live_message(held, settings) -> None:
    settings.HISTORY_SYNC = "full"
    Message.objects.create(
        session=held, direction="in", status="received", chat=CHAT, wa_message_id="3EBH0"
    )
    counts = services.history_store(session_id=held.pk, epoch=3, messages=history([1, 1]) * 2)
    assert (counts["stored"], counts["duplicates"]) == (1, 3)
    assert Message.objects.filter(session=held).count() == 2
