"""Scoped keys and tokens at every boundary (gateway/core/scopes.py): a key of tenant A against
tenant B's sessions (list, get, act), each scope refused where it does not reach (403
`forbidden_scope`), the sessions a key creates, keys without scopes unchanged, and JWT claims."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from rest_framework.test import APIClient

from messaging.models import Message
from sessions_app.models import Session
from workers.models import Worker

pytestmark = pytest.mark.django_db

TO = "+4915123456789"
HS_SECRET = "a-test-secret-that-is-long-enough-for-hs256-and-even-for-hs512-too!"
ALL = ["read", "send", "control", "manage"]


@pytest.fixture
def tenants(make_session) -> tuple[Session, Session]:
    """Tenant A's session and tenant B's, both connected."""
    a = make_session(status="connected", external_id="tenant-a", jid="15550001@s.whatsapp.net")
    b = make_session(status="connected", external_id="tenant-b", jid="15550002@s.whatsapp.net")
    return a, b


def forbidden(response, scope: str) -> bool:
    body = response.json()["error"]
    return response.status_code == 403 and (body["code"], body["details"]) == (
        "forbidden_scope",
        {"scope": scope},
    )


def ids(response) -> set[str]:
    assert response.status_code == 200, response.json()
    return {row["id"] for row in response.json()["results"]}


# --- Tenant A's key against tenant B's sessions ---------------------------------------------------


def test_the_list_shows_only_the_keys_sessions(tenants, make_scoped_key) -> None:
    a, _ = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=ALL)
    assert ids(client.get("/api/v1/sessions")) == {str(a.id)}
    assert ids(client.get("/api/v1/sessions", {"external_id": "tenant-b"})) == set()


def test_another_tenants_session_is_the_same_404_as_one_that_does_not_exist(
    tenants, make_scoped_key
) -> None:
    a, b = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=ALL)
    unknown = client.get(f"/api/v1/sessions/{uuid.uuid4()}")
    theirs = client.get(f"/api/v1/sessions/{b.id}")
    assert unknown.status_code == theirs.status_code == 404
    assert theirs.json() == unknown.json()
    assert client.get(f"/api/v1/sessions/{a.id}").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "messages", {"to": TO, "text": "hello"}),
        ("get", "messages", None),
        ("get", "chats", None),
        ("get", "groups", None),
        ("post", "start", None),
        ("post", "stop", None),
        ("post", "logout", None),
        ("get", "qr", None),
        ("post", "ws-token", None),
        ("post", "pair-code", {"phone_number": "+15550009"}),
        ("post", "presence", {"state": "available"}),
        ("delete", "", None),
    ],
)
def test_acting_on_another_tenants_session_is_404_and_changes_nothing(
    tenants, make_scoped_key, method: str, path: str, body
) -> None:
    a, b = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=ALL)
    url = f"/api/v1/sessions/{b.id}" + (f"/{path}" if path else "")
    response = getattr(client, method)(url, body, format="json")
    assert response.status_code == 404, response.json()
    assert response.json()["error"]["code"] == "not_found"
    b.refresh_from_db()
    assert (b.desired_state, b.logout_requested_at, b.delete_requested_at) == (
        "running",
        None,
        None,
    )
    assert not Message.objects.filter(session=b).exists()


def test_the_sandbox_controls_of_another_tenant_are_404(tenants, make_scoped_key) -> None:
    a, b = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=ALL)
    response = client.post(f"/api/v1/sandbox/sessions/{b.id}/scan", {}, format="json")
    assert response.status_code == 404


def test_another_tenants_message_is_404(tenants, make_scoped_key) -> None:
    a, b = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=["read"])
    mine = Message.objects.create(session=a, direction="in", status="received", chat=TO)
    theirs = Message.objects.create(session=b, direction="in", status="received", chat=TO)
    assert client.get(f"/api/v1/messages/{mine.pk}").status_code == 200
    response = client.get(f"/api/v1/messages/{theirs.pk}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_keys_own_session_can_be_sent_to_and_started(tenants, make_scoped_key) -> None:
    a, _ = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=ALL)
    sent = client.post(f"/api/v1/sessions/{a.id}/messages", {"to": TO, "text": "hi"}, format="json")
    assert sent.status_code == 202, sent.json()
    assert client.post(f"/api/v1/sessions/{a.id}/stop").status_code == 202


# --- Each scope, where it does not reach ----------------------------------------------------------


def test_a_read_only_key_reads_but_may_not_send(tenants, make_scoped_key) -> None:
    a, _ = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=["read"])
    assert client.get(f"/api/v1/sessions/{a.id}/messages").status_code == 200
    response = client.post(
        f"/api/v1/sessions/{a.id}/messages", {"to": TO, "text": "hello"}, format="json"
    )
    assert forbidden(response, "send"), response.json()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "start", None),
        ("post", "stop", None),
        ("post", "restart", None),
        ("post", "logout", None),
        ("post", "migrate", {}),
        ("delete", "", None),
        ("get", "qr", None),
        ("post", "ws-token", None),
        ("post", "pair-code", {"phone_number": "+15550009"}),
    ],
)
def test_a_key_without_control_may_not_change_or_link_a_session(
    tenants, make_scoped_key, method: str, path: str, body
) -> None:
    a, _ = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=["read", "send"])
    url = f"/api/v1/sessions/{a.id}" + (f"/{path}" if path else "")
    assert forbidden(getattr(client, method)(url, body, format="json"), "control")
    a.refresh_from_db()
    assert (a.desired_state, a.logout_requested_at, a.delete_requested_at) == (
        "running",
        None,
        None,
    )


def test_a_key_without_control_may_not_create_sessions_or_drive_the_sandbox(
    tenants, make_scoped_key
) -> None:
    a, _ = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=["read", "send"])
    assert forbidden(client.post("/api/v1/sessions", {}, format="json"), "control")
    scan = client.post(f"/api/v1/sandbox/sessions/{a.id}/scan", {}, format="json")
    assert forbidden(scan, "control")
    assert Session.objects.count() == 2


@pytest.mark.parametrize("path", ["/api/v1/keys", "/api/v1/workers"])
def test_a_key_without_manage_may_not_list_keys_or_workers(make_scoped_key, path: str) -> None:
    client, _ = make_scoped_key(scopes=["read", "send", "control"])
    assert forbidden(client.get(path), "manage")


def test_workers_need_a_key_not_limited_to_sessions(tenants, make_scoped_key) -> None:
    a, _ = tenants
    worker = Worker.objects.create(name="w")
    tenant, _ = make_scoped_key(sessions=[a], scopes=ALL)
    assert forbidden(tenant.get("/api/v1/workers"), "manage")
    assert forbidden(tenant.post(f"/api/v1/workers/{worker.id}/drain"), "manage")
    operator, _ = make_scoped_key(scopes=["manage"])
    assert ids(operator.get("/api/v1/workers")) == {str(worker.id)}


# --- The sessions a key creates -------------------------------------------------------------------


def test_a_key_reaches_the_sessions_it_creates_and_no_others(tenants, make_scoped_key) -> None:
    _, b = tenants
    client, _ = make_scoped_key(sessions=[], scopes=ALL)
    assert ids(client.get("/api/v1/sessions")) == set()
    created = client.post("/api/v1/sessions", {"start": False}, format="json")
    assert created.status_code == 201, created.json()
    new = created.json()["id"]
    assert Session.objects.get(pk=new).created_by_key is not None
    assert ids(client.get("/api/v1/sessions")) == {new}
    assert client.get(f"/api/v1/sessions/{new}").status_code == 200
    assert client.post(f"/api/v1/sessions/{new}/start").status_code == 202
    assert client.get(f"/api/v1/sessions/{b.id}").status_code == 404
    # Another key limited the same way does not reach it.
    other, _ = make_scoped_key(sessions=[], scopes=ALL)
    assert other.get(f"/api/v1/sessions/{new}").status_code == 404


def test_another_tenants_external_id_is_a_conflict_not_its_session(
    tenants, make_scoped_key
) -> None:
    a, b = tenants
    client, _ = make_scoped_key(sessions=[a], scopes=ALL)
    response = client.post("/api/v1/sessions", {"external_id": "tenant-b"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "external_id_taken"
    assert str(b.id) not in response.content.decode()
    again = client.post("/api/v1/sessions", {"external_id": "tenant-a"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == str(a.id)


# --- Keys without scopes ------------------------------------------------------------------------


def test_a_key_without_scopes_keeps_full_access(tenants, api: APIClient, make_scoped_key) -> None:
    a, b = tenants
    unlimited, _ = make_scoped_key(sessions=None, scopes=None)
    for client in (api, unlimited):  # a plain key from before scopes, and a scoped one without
        assert ids(client.get("/api/v1/sessions")) == {str(a.id), str(b.id)}
        assert client.post(f"/api/v1/sessions/{b.id}/stop").status_code == 202
        assert client.get("/api/v1/workers").status_code == 200
        assert client.get("/api/v1/keys").status_code == 200
    created = api.post("/api/v1/sessions", {"start": False}, format="json")
    assert Session.objects.get(pk=created.json()["id"]).created_by_key is None


# --- JWT claims ---------------------------------------------------------------------------------


@pytest.fixture
def bearer(settings):
    settings.BACKEND_JWT_SECRET = HS_SECRET

    def make(**claims: object) -> APIClient:
        token = jwt.encode(
            {"sub": "backend", "exp": int(time.time()) + 300, **claims}, HS_SECRET, "HS256"
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


def test_jwt_claims_limit_sessions_and_scopes(tenants, bearer) -> None:
    a, b = tenants
    reader = bearer(sessions=[str(a.id)], scope="read")
    assert ids(reader.get("/api/v1/sessions")) == {str(a.id)}
    assert reader.get(f"/api/v1/sessions/{b.id}").status_code == 404
    message = {"to": TO, "text": "hello"}
    assert forbidden(
        reader.post(f"/api/v1/sessions/{a.id}/messages", message, format="json"), "send"
    )
    assert forbidden(reader.post(f"/api/v1/sessions/{a.id}/start"), "control")
    assert forbidden(reader.get("/api/v1/keys"), "manage")

    sender = bearer(sessions=[str(a.id)], scope=["read", "send"])  # a list works too
    sent = sender.post(f"/api/v1/sessions/{a.id}/messages", message, format="json")
    assert sent.status_code == 202, sent.json()
    assert (
        sender.post(f"/api/v1/sessions/{b.id}/messages", message, format="json").status_code == 404
    )


def test_a_jwt_without_claims_keeps_full_access(tenants, bearer) -> None:
    client = bearer()
    assert ids(client.get("/api/v1/sessions")) == {str(s.id) for s in tenants}
    assert client.get("/api/v1/workers").status_code == 200


def test_scope_names_the_gateway_does_not_know_grant_nothing(tenants, bearer) -> None:
    client = bearer(scope="openid profile")
    assert forbidden(client.get("/api/v1/sessions"), "read")
    assert bearer(scope="openid read").get("/api/v1/sessions").status_code == 200


@pytest.mark.parametrize(
    "claims",
    [{"sessions": "not-a-list"}, {"sessions": ["not-a-uuid"]}, {"sessions": [1]}, {"scope": 5}],
)
def test_malformed_scope_claims_are_a_bad_token(bearer, claims) -> None:
    response = bearer(**claims).get("/api/v1/sessions")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


# --- Webhook endpoints and usage ----------------------------------------------------------------

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def _local_receivers(settings) -> None:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.mark.usefixtures("_local_receivers")
def test_webhook_endpoints_need_manage_and_stay_within_the_keys_sessions(
    tenants, make_scoped_key
) -> None:
    a, b = tenants
    reader, _ = make_scoped_key(sessions=[a], scopes=["read", "send", "control"])
    assert forbidden(reader.get("/api/v1/webhooks"), "manage")
    made = reader.post("/api/v1/webhooks", {"url": HOOK, "sessions": [str(a.id)]}, format="json")
    assert forbidden(made, "manage")

    tenant_a, _ = make_scoped_key(sessions=[a], scopes=["read", "manage"])
    tenant_b, _ = make_scoped_key(sessions=[b], scopes=["read", "manage"])
    # Another tenant's session is as unknown as one that does not exist.
    theirs = tenant_a.post(
        "/api/v1/webhooks", {"url": HOOK, "sessions": [str(b.id)]}, format="json"
    )
    unknown = tenant_a.post(
        "/api/v1/webhooks", {"url": HOOK, "sessions": [str(uuid.uuid4())]}, format="json"
    )
    assert theirs.status_code == unknown.status_code == 422
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "session_not_found"
    every = tenant_a.post("/api/v1/webhooks", {"url": HOOK}, format="json")
    assert every.status_code == 403 and every.json()["error"]["code"] == "forbidden_scope"

    mine = tenant_a.post("/api/v1/webhooks", {"url": HOOK, "sessions": [str(a.id)]}, format="json")
    assert mine.status_code == 201, mine.json()
    endpoint = mine.json()["id"]
    b_made = tenant_b.post(
        "/api/v1/webhooks", {"url": HOOK, "sessions": [str(b.id)]}, format="json"
    )
    assert ids(tenant_a.get("/api/v1/webhooks")) == {endpoint}
    assert ids(tenant_b.get("/api/v1/webhooks")) == {b_made.json()["id"]}
    for method, path in [("get", ""), ("delete", ""), ("post", "/test"), ("get", "/deliveries")]:
        response = getattr(tenant_b, method)(f"/api/v1/webhooks/{endpoint}{path}")
        assert response.status_code == 404, (method, path)
    widened = tenant_a.patch(
        f"/api/v1/webhooks/{endpoint}", {"sessions": [str(a.id), str(b.id)]}, format="json"
    )
    assert widened.status_code == 422
    assert (
        tenant_a.patch(
            f"/api/v1/webhooks/{endpoint}", {"sessions": None}, format="json"
        ).status_code
        == 403
    )
    assert tenant_a.delete(f"/api/v1/webhooks/{endpoint}").status_code == 204


@pytest.mark.usefixtures("_local_receivers")
def test_an_endpoint_for_no_session_is_refused_and_never_another_tenants(
    tenants, make_scoped_key, api
) -> None:
    """`sessions: []` is refused (it would be every session's subset: visible to every limited
    key); a row that holds it anyway (made before the check) is only full-access keys'."""
    from gateway.outbox.models import Endpoint

    a, b = tenants
    tenant_a, _ = make_scoped_key(sessions=[a], scopes=["read", "manage"])
    tenant_b, _ = make_scoped_key(sessions=[b], scopes=["read", "manage"])
    for client in (tenant_a, api):
        empty = client.post("/api/v1/webhooks", {"url": HOOK, "sessions": []}, format="json")
        assert empty.status_code == 400, empty.json()
        assert empty.json()["error"]["code"] == "validation_error"
        assert empty.json()["error"]["details"] == {"sessions": ["[] should be non-empty"]}
    assert not Endpoint.objects.exists()
    mine = tenant_a.post("/api/v1/webhooks", {"url": HOOK, "sessions": [str(a.id)]}, format="json")
    emptied = tenant_a.patch(
        f"/api/v1/webhooks/{mine.json()['id']}", {"sessions": []}, format="json"
    )
    assert emptied.status_code == 400 and emptied.json()["error"]["code"] == "validation_error"
    assert Endpoint.objects.get(pk=mine.json()["id"]).sessions == [str(a.id)]

    legacy = Endpoint.objects.create(url=HOOK, secret="whsec_x", sessions=[])
    for client in (tenant_a, tenant_b):
        assert str(legacy.pk) not in ids(client.get("/api/v1/webhooks"))
        for method, path, body in [
            ("get", "", None),
            ("patch", "", {"description": "mine now"}),
            ("post", "/rotate-secret", {}),
            ("post", "/test", None),
            ("delete", "", None),
        ]:
            response = getattr(client, method)(
                f"/api/v1/webhooks/{legacy.pk}{path}", body, format="json"
            )
            assert response.status_code == 404, (method, path, response.json())
    legacy.refresh_from_db()
    assert (legacy.description, legacy.secret) == ("", "whsec_x")
    assert str(legacy.pk) in ids(api.get("/api/v1/webhooks"))  # a full-access key sees it


def test_usage_shows_a_key_only_its_sessions(tenants, make_scoped_key) -> None:
    from gateway.core.usage import usage_add

    a, b = tenants
    for session in (a, b):
        usage_add(session.id, messages_sent=1)
    client, _ = make_scoped_key(sessions=[a], scopes=["read"])
    everything = client.get("/api/v1/usage")
    assert everything.status_code == 200, everything.json()
    assert {row["session"] for row in everything.json()["results"]} == {str(a.id)}
    assert client.get("/api/v1/usage", {"session": str(b.id)}).status_code == 404
    assert client.get("/api/v1/usage", {"session": str(a.id)}).status_code == 200
