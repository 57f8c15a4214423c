"""`/api/v1/keys` (gateway/core/keys.py) and the admin's scoped keys: made with the key shown once
and stored hashed, listed without it, revoked; validation as 4xx; no key wider than its maker."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from gateway.core.models import ScopedAPIKey

pytestmark = pytest.mark.django_db
ALL = ["read", "send", "control", "manage"]


def using(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def listed(client: APIClient) -> set[str]:
    response = client.get("/api/v1/keys")
    assert response.status_code == 200, response.json()
    assert all("key" not in row for row in response.json()["results"])
    return {row["name"] for row in response.json()["results"]}


def test_a_key_is_answered_once_stored_hashed_and_limited_as_asked(
    api: APIClient, make_session
) -> None:
    mine, theirs = make_session(), make_session()
    expires = timezone.now() + timedelta(days=1)
    response = api.post(
        "/api/v1/keys",
        {
            "name": "tenant-a",
            "sessions": [str(mine.id), str(mine.id)],
            "scopes": ["send", "read"],
            "expires_at": expires.isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    key = body.pop("key")
    assert re.fullmatch(r"[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}", key)
    assert body["id"] == body["prefix"] == key.split(".")[0]
    assert (body["name"], body["sessions"], body["scopes"]) == (
        "tenant-a",
        [str(mine.id)],
        ["read", "send"],
    )
    stored = ScopedAPIKey.objects.get(prefix=body["id"])
    assert key not in stored.hashed_key and stored.expiry_date == expires

    tenant = using(key)
    assert {row["id"] for row in tenant.get("/api/v1/sessions").json()["results"]} == {str(mine.id)}
    assert tenant.get(f"/api/v1/sessions/{theirs.id}").status_code == 404
    assert tenant.post(f"/api/v1/sessions/{mine.id}/stop").json()["error"]["code"] == (
        "forbidden_scope"
    )

    shown = api.get(f"/api/v1/keys/{body['id']}")
    assert shown.status_code == 200 and "key" not in shown.json()
    assert shown.json()["sessions"] == [str(mine.id)]
    assert "tenant-a" in listed(api)


def test_omitted_lists_mean_everything(api: APIClient) -> None:
    response = api.post("/api/v1/keys", {"name": "ops"}, format="json")
    assert response.status_code == 201
    assert (response.json()["sessions"], response.json()["scopes"]) == (None, None)
    assert using(response.json()["key"]).get("/api/v1/workers").status_code == 200


def test_a_revoked_key_stops_working_and_is_gone(api: APIClient) -> None:
    made = api.post("/api/v1/keys", {"name": "short-lived"}, format="json").json()
    client = using(made["key"])
    assert client.get("/api/v1/sessions").status_code == 200
    assert api.delete(f"/api/v1/keys/{made['id']}").status_code == 204
    assert client.get("/api/v1/sessions").status_code == 401
    assert api.get(f"/api/v1/keys/{made['id']}").status_code == 404
    assert api.delete(f"/api/v1/keys/{made['id']}").status_code == 404
    assert "short-lived" not in listed(api)
    assert APIKey.objects.get(prefix=made["id"]).revoked


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "name"),
        ({"name": "x", "scopes": ["read", "admin"]}, 400, "scopes"),
        ({"name": "x", "scopes": []}, 400, "scopes"),
        ({"name": "x", "sessions": ["not-a-uuid"]}, 400, "sessions"),
        ({"name": "x", "sessions": "all"}, 400, "sessions"),
        ({"name": "x" * 51}, 400, "name"),
        ({"name": "x", "expires_at": "yesterday"}, 400, "expires_at"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, 422, "expires_at"),
    ],
)
def test_bad_keys_are_refused_with_the_field(api: APIClient, body, status: int, field: str) -> None:
    response = api.post("/api/v1/keys", body, format="json")
    assert response.status_code == status, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in str(error["details"]), error
    assert not ScopedAPIKey.objects.exists()


def test_an_unknown_key_id_is_404(api: APIClient) -> None:
    assert api.get("/api/v1/keys/nope").status_code == 404
    assert api.get("/api/v1/keys/Abcdefgh").status_code == 404
    assert api.delete("/api/v1/keys/Abcdefgh").status_code == 404


# --- No key wider than its maker ----------------------------------------------------------------


@pytest.mark.parametrize(
    "asked",
    [
        {"sessions": "both", "scopes": ["read"]},
        {"scopes": ["read"]},  # sessions omitted: every session
        {"sessions": "mine", "scopes": ["read", "control"]},
        {"sessions": "mine"},  # scopes omitted: every scope
        {"sessions": "mine", "scopes": ["read"], "expires_at": "later"},
    ],
)
def test_a_limited_key_may_not_make_a_wider_one(make_session, make_scoped_key, asked) -> None:
    mine, theirs = make_session(), make_session()
    own_expiry = timezone.now() + timedelta(hours=1)
    client, _ = make_scoped_key(
        sessions=[mine], scopes=["read", "send", "manage"], expiry_date=own_expiry
    )
    sessions = {"both": [str(mine.id), str(theirs.id)], "mine": [str(mine.id)]}
    body = {"name": "wider", **asked}
    if "sessions" in body:
        body["sessions"] = sessions[body["sessions"]]
    if body.get("expires_at") == "later":
        body["expires_at"] = (own_expiry + timedelta(days=1)).isoformat()
    response = client.post("/api/v1/keys", body, format="json")
    assert response.status_code == 403, response.json()
    assert response.json()["error"]["code"] == "forbidden_scope"
    assert not ScopedAPIKey.objects.filter(name="wider").exists()


def test_a_limited_key_makes_keys_within_itself_expiring_with_it(
    make_session, make_scoped_key
) -> None:
    mine = make_session()
    own_expiry = timezone.now() + timedelta(hours=1)
    client, _ = make_scoped_key(
        sessions=[mine], scopes=["read", "send", "manage"], expiry_date=own_expiry
    )
    response = client.post(
        "/api/v1/keys",
        {"name": "narrower", "sessions": [str(mine.id)], "scopes": ["read"]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert ScopedAPIKey.objects.get(name="narrower").expiry_date == own_expiry


def test_the_sessions_a_key_created_are_its_to_give(make_scoped_key) -> None:
    client, _ = make_scoped_key(sessions=[], scopes=ALL)
    created = client.post("/api/v1/sessions", {"start": False}, format="json").json()["id"]
    response = client.post(
        "/api/v1/keys", {"name": "child", "sessions": [created], "scopes": ["read"]}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert using(response.json()["key"]).get(f"/api/v1/sessions/{created}").status_code == 200
    elsewhere = str(uuid.uuid4())
    refused = client.post(
        "/api/v1/keys", {"name": "x", "sessions": [elsewhere], "scopes": ["read"]}, format="json"
    )
    assert refused.status_code == 403


def test_a_tenant_sees_and_revokes_only_keys_within_its_own(make_session, make_scoped_key) -> None:
    a, b = make_session(), make_session()
    tenant_a, _ = make_scoped_key(name="a-admin", sessions=[a], scopes=["read", "manage"])
    make_scoped_key(name="a-reader", sessions=[a], scopes=["read"])
    b_client, _ = make_scoped_key(name="b-reader", sessions=[b], scopes=["read"])
    make_scoped_key(name="a-sender", sessions=[a], scopes=["read", "send"])  # wider scopes
    APIKey.objects.create_key(name="full")

    assert listed(tenant_a) == {"a-admin", "a-reader"}
    b_key = ScopedAPIKey.objects.get(name="b-reader")
    assert tenant_a.get(f"/api/v1/keys/{b_key.prefix}").status_code == 404
    assert tenant_a.delete(f"/api/v1/keys/{b_key.prefix}").status_code == 404
    assert b_client.get(f"/api/v1/sessions/{b.id}").status_code == 200  # still works
    a_reader = ScopedAPIKey.objects.get(name="a-reader")
    assert tenant_a.delete(f"/api/v1/keys/{a_reader.prefix}").status_code == 204


# --- The admin ----------------------------------------------------------------------------------


def test_a_scoped_key_made_in_the_admin_is_shown_once_and_limited(
    client: Client, staff_user, make_session
) -> None:
    client.force_login(staff_user)
    mine, theirs = make_session(), make_session()
    response = client.post(
        "/admin/core/scopedapikey/add/",
        {"name": "tenant", "sessions": f'["{mine.id}"]', "scopes": '["read"]'},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    found = re.search(r"The API key for [^:]+: ([A-Za-z0-9]+\.[A-Za-z0-9]+)", page)
    assert found, page[:3000]
    stored = ScopedAPIKey.objects.get()
    assert (stored.sessions, stored.scopes) == ([str(mine.id)], ["read"])
    assert found.group(1) not in stored.hashed_key
    tenant = using(found.group(1))
    assert tenant.get(f"/api/v1/sessions/{mine.id}").status_code == 200
    assert tenant.get(f"/api/v1/sessions/{theirs.id}").status_code == 404
    assert client.get("/admin/core/scopedapikey/").status_code == 200
    change = client.get(f"/admin/core/scopedapikey/{stored.pk}/change/").content.decode()
    assert found.group(1) not in change


def test_the_admin_refuses_scopes_it_does_not_know(client: Client, staff_user) -> None:
    client.force_login(staff_user)
    response = client.post(
        "/admin/core/scopedapikey/add/",
        {"name": "bad", "sessions": '["nope"]', "scopes": '["root"]'},
    )
    assert response.status_code == 200  # the form again, with its errors
    assert not ScopedAPIKey.objects.exists()
