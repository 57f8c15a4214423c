"""The request path's costs: verified API keys kept for API_KEY_CACHE_SECONDS
(gateway/core/auth.py), the queries of `GET /sessions/{id}` and `POST …/messages`, serializers
built once per class.

A change made by another process (another web process, the admin on another machine) reaches this
one only through the database: the `elsewhere` fixture makes this test's changes like that (this
process's own save/delete signals, which forget its verified keys at once, are disconnected)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from gateway.core import auth
from gateway.core.models import ScopedAPIKey
from messaging.models import Message
from sessions_app.models import Session
from sessions_app.serializers import SessionOutputSerializer

pytestmark = pytest.mark.django_db
TTL = 5


@pytest.fixture(autouse=True)
def _ttl(settings) -> None:
    settings.API_KEY_CACHE_SECONDS = TTL


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Moves the key cache's clock on by some seconds."""
    now = [1000.0]
    monkeypatch.setattr(auth, "_clock", lambda: now[0])

    def move(seconds: float) -> None:
        now[0] += seconds

    return move


@pytest.fixture
def elsewhere() -> Iterator[None]:
    for signal in (post_save, post_delete):
        signal.disconnect(auth.forget_verified_keys)
    yield
    for signal in (post_save, post_delete):
        signal.connect(auth.forget_verified_keys)


@pytest.fixture
def session(make_session) -> Session:
    return make_session(status="connected", desired_state="running", jid="15550001@s.whatsapp.net")


def status(client: APIClient, session: Session) -> int:
    return client.get(f"/api/v1/sessions/{session.pk}").status_code


def test_a_revoked_key_is_refused_within_the_ttl(api, session, clock, elsewhere) -> None:
    assert status(api, session) == 200
    APIKey.objects.update(revoked=True)
    clock(TTL - 0.5)
    assert status(api, session) == 200  # still trusted: no database read for it
    clock(1)
    assert status(api, session) == 401


def test_an_expired_key_is_refused_within_the_ttl(api, session, clock, elsewhere) -> None:
    assert status(api, session) == 200
    APIKey.objects.update(expiry_date=timezone.now() - timedelta(seconds=1))
    clock(TTL + 0.5)
    response = api.get(f"/api/v1/sessions/{session.pk}")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_a_key_is_refused_once_its_expiry_date_passes_even_when_cached(
    make_api_key, session, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=make_api_key(expiry_date=timezone.now() + timedelta(1)))
    assert status(client, session) == 200
    later = timezone.now() + timedelta(days=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert status(client, session) == 401  # the cached row's own expiry date, checked each time


def test_a_deleted_scoped_key_is_refused_within_the_ttl(
    make_scoped_key, session, clock, elsewhere
) -> None:
    client, _ = make_scoped_key(sessions=[session])
    assert status(client, session) == 200
    ScopedAPIKey.objects.all().delete()
    assert not APIKey.objects.exists()
    clock(TTL + 0.5)
    assert status(client, session) == 401


def test_scope_changes_take_effect_within_the_ttl(
    make_scoped_key, session, clock, elsewhere
) -> None:
    client, _ = make_scoped_key(sessions=[session], scopes=["read"])
    assert status(client, session) == 200
    ScopedAPIKey.objects.update(scopes=["send"])
    clock(TTL - 0.5)
    assert status(client, session) == 200
    clock(1)
    assert status(client, session) == 403
    ScopedAPIKey.objects.update(scopes=["read"], sessions=[])
    clock(TTL + 0.5)
    assert status(client, session) == 404  # not one of its sessions any more


def test_a_key_revoked_through_this_process_is_refused_at_once(api, session) -> None:
    assert status(api, session) == 200
    key = APIKey.objects.get()
    key.revoked = True
    key.save()  # as the keys API and the admin do
    assert status(api, session) == 401


def test_with_no_cache_every_request_reads_the_key(
    settings, api, session, elsewhere, django_assert_num_queries
) -> None:
    settings.API_KEY_CACHE_SECONDS = 0
    assert status(api, session) == 200
    with django_assert_num_queries(2):  # the key, the session
        assert status(api, session) == 200
    APIKey.objects.update(revoked=True)
    assert status(api, session) == 401
    assert not auth._verified


def test_keys_are_kept_by_a_hash_never_the_key(api_key: str, api, session) -> None:
    assert status(api, session) == 200
    assert auth._verified and api_key not in repr(auth._verified)
    assert all(api_key not in digest for digest in auth._verified)


def test_a_bad_key_is_never_kept(session) -> None:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY="AbCdEfGh." + "x" * 32)
    assert status(client, session) == 401
    assert not auth._verified


def test_get_session_is_one_query_with_a_verified_key(
    api, session, django_assert_num_queries
) -> None:
    assert status(api, session) == 200  # the key is verified: its query, then it is kept
    with django_assert_num_queries(1):  # the session
        assert status(api, session) == 200


def test_post_message_queries_with_a_verified_key(api, session, django_assert_num_queries) -> None:
    url = f"/api/v1/sessions/{session.pk}/messages"
    body = {"to": "+4915123456789", "text": "hi"}
    assert api.post(url, body, format="json").status_code == 202
    # The session; then in one transaction (a savepoint inside the test's): the message and the
    # worker's wake-up (pg_notify). Before the key cache, the key's lookup came first.
    with django_assert_num_queries(5, exact=True):
        assert api.post(url, body, format="json").status_code == 202
    assert Message.objects.filter(session=session).count() == 2


def test_output_serializers_build_their_fields_once(session) -> None:
    first = SessionOutputSerializer(session).fields
    second = SessionOutputSerializer(session).fields
    assert first["id"] is not second["id"]  # each serializer binds fields of its own
    assert first["id"].parent is not second["id"].parent
    assert "_fields_once" in vars(SessionOutputSerializer)
    assert SessionOutputSerializer(session).data["id"] == str(session.pk)
