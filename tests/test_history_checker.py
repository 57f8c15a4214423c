"""The history checker (tests/history.py) finds what it is there to find."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import transaction

from messaging.models import Message
from sessions_app.events import outbox_event
from sessions_app.models import Session, SessionEvent
from tests.history import check_history
from workers.engines.sandbox import SandboxWorld

pytestmark = pytest.mark.django_db


def test_a_good_history_has_no_problem_and_each_broken_guarantee_is_named(
    tmp_path: Path, settings
) -> None:
    settings.BACKEND_URL = "http://127.0.0.1:9"
    world = SandboxWorld(tmp_path)
    session = Session.objects.create(engine="sandbox", status="connected", snapshot_key="k")
    sid = str(session.pk)
    first = world.open_connection(sid, "a", "d")
    world.close_connection(sid, first, "a", "stopped")
    world.open_connection(sid, "b", "d")
    assert check_history(world, [sid]) == []

    world.open_connection(sid, "c", "d")  # b's still open: the servers replace it
    sent = Message.objects.create(
        session=session,
        direction="out",
        type="text",
        chat="1@s.whatsapp.net",
        status="sent",
        wa_message_id="never-delivered",
    )
    Message.objects.create(
        session=session, direction="out", type="text", chat="1@s.whatsapp.net", status="queued"
    )
    with transaction.atomic():
        outbox_event(session, "test.event", "/hooks", n=0)
    Session.objects.filter(pk=session.pk).update(snapshot_key="")
    problems = check_history(world, [sid])
    assert len(problems) == 5, problems
    assert any("still open when another opened" in p for p in problems)
    assert any(f"message {sent.pk} (sent) is on the phone 0 times" in p for p in problems)
    assert any("never went out" in p for p in problems)
    assert "1 deliveries pending" in problems
    assert any("auth state gone without a logout" in p for p in problems)
    relaxed = check_history(world, [sid], replaced_ok=True, received=[])
    expected = [p for p in problems if "still open" not in p]
    assert sorted(relaxed) == sorted([*expected, "1 events never reached the receiver"])
    SessionEvent.objects.create(session=session, from_status="connected", to_status="logged_out")
    assert not any("auth state" in p for p in check_history(world, [sid]))
