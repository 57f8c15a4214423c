"""The contract check (gateway/core/contract.py) holds every API request to the published schema."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from gateway.core import contract

pytestmark = pytest.mark.django_db


def _routes(patterns, prefix: str = "") -> list[tuple[str, object]]:
    routes = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            routes += _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            routes.append((prefix + str(pattern.pattern), pattern.callback))
    return routes


def test_every_api_route_is_checked_against_its_operation() -> None:
    """A route the check could not find in the schema, or a view without the check, would go
    unchecked."""
    api = [(r, view) for r, view in _routes(get_resolver().url_patterns) if r.startswith("api/v1/")]
    known = {path for path, _ in contract._operations()}
    assert api and {contract._route_path(r) for r, _ in api} <= known
    assert all(issubclass(view.cls, contract.ContractChecked) for _, view in api)


@pytest.mark.parametrize("content_type", ["*/*", "application/*", "*/json", "text/plain"])
def test_a_body_of_a_type_the_operation_does_not_name_is_415(
    api: APIClient, content_type: str
) -> None:
    """DRF's parsers would take wildcards; the schema names exact types, and so does the check."""
    response = api.post(
        "/api/v1/sessions", '{"metadata": {"a": "\\u0000"}}', content_type=content_type
    )
    assert response.status_code == 415, response.json()
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_a_body_without_a_type_is_415_and_no_body_is_an_empty_object(
    api: APIClient, make_session
) -> None:
    response = api.generic("POST", "/api/v1/sessions", b'{"name": "x"}', content_type="")
    assert response.status_code == 415
    session = make_session(status="scan_qr")
    missing = api.generic("POST", f"/api/v1/sessions/{session.id}/pair-code", b"", content_type="")
    assert missing.status_code == 400 and "phone_number" in str(missing.json()["error"]["details"])


def test_head_is_held_to_the_get_operation(api: APIClient) -> None:
    assert api.head("/api/v1/sessions?page_size=0").status_code == 400
    assert api.head("/api/v1/sessions?page_size=5").status_code == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"HTTP_IDEMPOTENCY_KEY": "ключ"}, 400),  # not printable ASCII
        ({"HTTP_IDEMPOTENCY_KEY": "k" * 201}, 400),
        ({"HTTP_IDEMPOTENCY_KEY": "order-1234"}, 202),
    ],
)
def test_headers_are_checked_too(api: APIClient, make_session, headers, status) -> None:
    session = make_session(status="connected", desired_state="running", jid="1@s.whatsapp.net")
    response = api.post(
        f"/api/v1/sessions/{session.id}/messages",
        {"to": "+4915123456789", "text": "x"},
        format="json",
        **headers,
    )
    assert response.status_code == status, response.json()
    if status == 400:
        assert "Idempotency-Key" in response.json()["error"]["details"]


def test_a_violation_names_every_field_at_once(api: APIClient) -> None:
    response = api.post(
        "/api/v1/sessions", {"engine": "x", "start": "yes", "name": 1}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"engine", "start", "name"}


def test_a_nullable_fields_wrong_value_is_told_what_its_schema_says(api: APIClient) -> None:
    """Not "not valid under any of the given schemas" (the null alternative is not the point)."""
    response = api.post("/api/v1/webhooks", {"url": "x", "sessions": "all"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"sessions": ["'all' is not of type 'array'"]}


def test_an_anonymous_caller_is_told_401_before_any_rule(anon: APIClient) -> None:
    response = anon.post("/api/v1/sessions", {"engine": "x"}, format="json")
    assert response.status_code == 401


def test_forms_are_not_taken_where_the_schema_says_json(api: APIClient) -> None:
    response = api.post("/api/v1/sessions", {"name": "x"}, format="multipart")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_a_date_time_that_cannot_exist_is_a_400_not_a_500(api: APIClient, make_session) -> None:
    """Well-formed ISO 8601 with no such month or hour: Django's parser raises on these."""
    session = make_session()
    for value in ["2026-13-01T00:00:00Z", "2026-02-30T10:00:00Z", "2026-01-01T25:00:00Z"]:
        response = api.get(f"/api/v1/sessions/{session.id}/messages", {"since": value})
        assert response.status_code == 400, (value, response.json())
        assert "since" in response.json()["error"]["details"]


def test_threads_of_a_new_process_build_the_schema_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threaded server's first requests arrive together; drf-spectacular's generation is not
    thread-safe, so one builds the schema and the others wait for it."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from drf_spectacular.generators import SchemaGenerator

    built, inside, overlapped = [], threading.Event(), []
    real = SchemaGenerator.get_schema

    def counted(self, *args, **kwargs):
        overlapped.append(inside.is_set())
        inside.set()
        try:
            built.append(1)
            return real(self, *args, **kwargs)
        finally:
            inside.clear()

    contract._build_operations.cache_clear()
    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: contract._operations(), range(8)))
    finally:
        contract._build_operations.cache_clear()
    assert len(built) == 1 and not any(overlapped)
    assert all(result is results[0] for result in results)
