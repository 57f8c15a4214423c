"""Conversations: one row per chat in one query, a chat's messages, and marking a chat read
(its receipts on both engines are in tests/system/test_both_engines.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from groups import services as groups
from messaging.models import Message

pytestmark = pytest.mark.django_db
ANN, BOB, TEAM = (
    "4915112345678@s.whatsapp.net",
    "15550003@s.whatsapp.net",
    "120363000000000001@g.us",
)


def message(session, chat: str, text: str, *, minutes: int, direction="in", status="received"):
    row = Message.objects.create(
        session=session, chat=chat, text=text, direction=direction, status=status, sender=chat
    )
    Message.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))
    return row


def test_one_row_per_chat_newest_first_in_one_query(
    api: APIClient, make_session, django_assert_num_queries
) -> None:
    session = make_session(status="connected")
    message(session, ANN, "hi", minutes=30)
    message(session, ANN, "are you there?", minutes=20)
    message(session, BOB, "old", minutes=50, status="read")
    message(session, TEAM, "ours", minutes=10, direction="out", status="sent")
    message(make_session(), ANN, "another session's", minutes=1)
    groups.groups_store(session_id=session.pk, groups=[{"jid": TEAM, "subject": "Team"}])
    for n in range(20):  # more chats must not mean more queries
        message(session, f"49151000000{n:02d}@s.whatsapp.net", "x", minutes=60 + n)
    url = f"/api/v1/sessions/{session.id}/chats?page_size=3"
    # The API key, the session, the page, its last messages, its subjects: however many chats.
    with django_assert_num_queries(5):
        body = api.get(url).json()
    rows = body["results"]
    assert [(r["jid"], r["subject"], r["unread"]) for r in rows] == [
        (TEAM, "Team", 0),
        (ANN, None, 2),
        (BOB, None, 0),
    ]
    assert rows[1]["phone_number"] == "+4915112345678" and rows[0]["phone_number"] == ""
    assert (rows[1]["last_message"]["text"], rows[0]["last_message"]["direction"]) == (
        "are you there?",
        "out",
    )
    following = api.get(body["next"]).json()["results"]
    assert len(following) == 3 and following[0]["jid"] not in {r["jid"] for r in rows}


def test_a_chats_messages_by_number_or_jid(api: APIClient, make_session) -> None:
    session = make_session(status="connected")
    message(session, ANN, "one", minutes=2)
    message(session, ANN, "two", minutes=1)
    message(session, BOB, "other", minutes=1)
    for chat in ("+4915112345678", ANN):
        body = api.get(f"/api/v1/sessions/{session.id}/chats/{chat}/messages").json()
        assert [m["text"] for m in body["results"]] == ["two", "one"]
    response = api.get(f"/api/v1/sessions/{session.id}/chats/nobody/messages")
    assert response.status_code == 422


def test_reading_a_chat_needs_a_connected_session(api: APIClient, make_session) -> None:
    session = make_session(status="stopped")
    unread = message(session, ANN, "hi", minutes=1)
    response = api.post(f"/api/v1/sessions/{session.id}/chats/{ANN}/read")
    assert response.status_code == 409
    assert Message.objects.get(pk=unread.pk).status == "received"  # nothing changed
