"""Editing and deleting our messages through the API, with no worker running: what the queue
still holds changes here; WhatsApp's windows and the message's kind are judged before any call
(what the actions do on both engines is in tests/system/test_both_engines.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from gateway.outbox.models import WebhookDelivery
from messaging.models import Message

pytestmark = pytest.mark.django_db
TO = "+4915123456789"


@pytest.fixture
def session(make_session):
    return make_session(status="connected", desired_state="running", jid="15550001@s.whatsapp.net")


def queued(api: APIClient, session, text: str = "draft") -> str:
    response = api.post(f"/api/v1/sessions/{session.id}/messages", {"to": TO, "text": text}, "json")
    assert response.status_code == 202
    return response.json()["id"]


def url(session, message_id) -> str:
    return f"/api/v1/sessions/{session.id}/messages/{message_id}"


def test_a_queued_message_is_edited_before_it_goes(api: APIClient, session) -> None:
    message_id = queued(api, session)
    response = api.patch(url(session, message_id), {"text": "final"}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["text"], response.json()["status"]) == ("final", "queued")
    assert [e["text"] for e in response.json()["edits"]] == ["draft"]
    assert Message.objects.get(pk=message_id).text == "final"


def test_deleting_a_queued_message_cancels_it(api: APIClient, session, settings) -> None:
    settings.BACKEND_URL = "http://backend.test"
    message_id = queued(api, session)
    response = api.delete(url(session, message_id))
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "revoked" and response.json()["revoked_at"]
    revoked = WebhookDelivery.objects.filter(event_type="message.revoked").get()
    assert revoked.payload["message"]["id"] == message_id
    # Nothing moves it again, and the queue never takes it (it takes only queued messages).
    assert api.patch(url(session, message_id), {"text": "x"}, format="json").status_code == 409
    assert api.delete(url(session, message_id)).json()["error"]["code"] == "not_revocable"


def test_whatsapps_windows_and_what_can_be_edited_are_judged_first(api: APIClient, session) -> None:
    message_id = queued(api, session)
    sent = timezone.now() - timedelta(minutes=16)
    Message.objects.filter(pk=message_id).update(status="sent", wa_message_id="3EB0A", sent_at=sent)
    response = api.patch(url(session, message_id), {"text": "late"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "edit_window_passed"
    Message.objects.filter(pk=message_id).update(sent_at=timezone.now() - timedelta(hours=61))
    response = api.delete(url(session, message_id))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "revoke_window_passed"
    inbound = Message.objects.create(
        session=session, direction="in", status="received", chat=TO, wa_message_id="3EB0B"
    )
    response = api.patch(url(session, inbound.pk), {"text": "mine now"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_editable"
    assert Message.objects.get(pk=inbound.pk).text == ""  # unchanged
    sending = queued(api, session, "on its way")
    Message.objects.filter(pk=sending).update(status="sending")
    response = api.delete(url(session, sending))
    assert response.status_code == 409 and response.json()["error"]["code"] == "message_sending"


def test_an_edit_needs_text_and_another_sessions_message_is_a_404(
    api: APIClient, session, make_session
) -> None:
    message_id = queued(api, session)
    assert api.patch(url(session, message_id), {}, format="json").status_code == 422
    other = make_session(status="connected")
    assert api.delete(url(other, message_id)).status_code == 404


@pytest.mark.parametrize("kept", ["keep", "erase"])
def test_a_message_deleted_for_everyone_keeps_or_erases_what_it_said(
    held, settings, kept: str, django_capture_on_commit_callbacks
) -> None:
    from django.core.files.base import ContentFile

    from messaging import services

    settings.REVOKED_CONTENT = kept
    message = Message.objects.create(
        session=held,
        direction="in",
        status="received",
        chat=TO,
        wa_message_id="3EB0C",
        type="image",
        caption="the plan",
        payload={"mentions": ["2@s.whatsapp.net"]},
    )
    message.media.save("plan.png", ContentFile(b"\x89PNG..."), save=True)
    name = message.media.name
    with django_capture_on_commit_callbacks(execute=True):  # the file goes after the commit
        assert services.inbound_revoked(
            session_id=held.pk, epoch=3, chat=TO, wa_message_id="3EB0C", sender=TO
        )
    message.refresh_from_db()
    assert message.status == "revoked" and message.revoked_at is not None
    if kept == "keep":
        assert message.caption == "the plan" and message.media.name == name
    else:
        assert (message.caption, message.media.name, message.payload) == ("", "", {"erased": True})
        assert not message.media.storage.exists(name)
    assert not services.inbound_revoked(  # seen before: nothing more
        session_id=held.pk, epoch=3, chat=TO, wa_message_id="3EB0C", sender=TO
    )
