from __future__ import annotations

import json
import logging

import pytest
from django.test import Client
from rest_framework.test import APIClient

from sessions_app.models import Session

pytestmark = pytest.mark.django_db


def _error(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


@pytest.mark.smoke
def test_malformed_json_is_a_400_and_writes_nothing(api: APIClient) -> None:
    response = api.post("/api/v1/sessions", '{"external_id": "a",', content_type="application/json")
    assert response.status_code == 400
    assert _error(response)["code"] == "malformed_request"
    assert Session.objects.count() == 0


def test_an_unsupported_content_type_is_a_415(api: APIClient) -> None:
    response = api.post("/api/v1/sessions", "external_id=a", content_type="text/plain")
    assert response.status_code == 415
    assert _error(response)["code"] == "unsupported_media_type"
    assert Session.objects.count() == 0


def test_a_body_over_the_limit_is_a_413(api: APIClient, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = json.dumps({"engine": "sandbox", "metadata": {"x": "y" * 2000}})
    response = api.post("/api/v1/sessions", body, content_type="application/json")
    assert response.status_code == 413
    assert _error(response)["code"] == "payload_too_large"
    assert Session.objects.count() == 0


def test_a_wrong_method_is_a_405(api: APIClient) -> None:
    response = api.put("/api/v1/sessions", {}, format="json")
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


def test_an_unknown_api_path_is_a_json_404(api: APIClient) -> None:
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_pages_outside_the_api_keep_html_errors(client: Client) -> None:
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_a_request_id_is_made_and_returned(api: APIClient) -> None:
    response = api.get("/api/v1/sessions")
    assert len(response["X-Request-ID"]) == 32


def test_a_callers_request_id_is_kept_when_safe(api: APIClient) -> None:
    assert api.get("/api/v1/sessions", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    unsafe = api.get("/api/v1/sessions", HTTP_X_REQUEST_ID="a b\r\nX-Evil: 1")["X-Request-ID"]
    assert unsafe != "a b\r\nX-Evil: 1"
    assert len(unsafe) == 32


@pytest.mark.urls("tests.gateway.boom_urls")
def test_an_unexpected_exception_is_a_json_500_with_the_request_id(
    api: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.errors"):
        response = api.get("/api/v1/boom", HTTP_X_REQUEST_ID="req-42")

    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "internal_error"
    assert error["details"] == {"request_id": "req-42"}
    assert "a bug" not in json.dumps(error)
    logged = [r for r in caplog.records if r.name == "gateway.errors"]
    assert logged and logged[0].exc_info[0] is RuntimeError
    assert logged[0].request_id == "req-42"


@pytest.mark.urls("tests.gateway.boom_urls")
def test_an_exception_outside_drf_is_a_json_500_too(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="gateway.request"):
        response = client.get("/api/v1/plain-boom", HTTP_X_REQUEST_ID="req-43")

    assert response.status_code == 500
    assert _error(response)["details"] == {"request_id": "req-43"}
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


def test_each_request_is_logged_as_one_json_line(
    api: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        api.get("/api/v1/sessions", HTTP_X_REQUEST_ID="req-7")

    [record] = [r for r in caplog.records if r.name == "gateway.request"]
    formatter = logging.getLogger().handlers[0].formatter
    line = json.loads(formatter.format(record))
    assert line["message"] == "request"
    assert line["request_id"] == "req-7"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/sessions", 200)
    assert line["level"] == "INFO"


@pytest.mark.parametrize("path", ["/api/v1/sessions", "/api/v1/workers"])
def test_an_edited_cursor_is_a_422_not_a_500(api: APIClient, path: str) -> None:
    import base64

    cursor = base64.b64encode(b"p=notadate").decode()
    response = api.get(f"{path}?cursor={cursor}")
    assert response.status_code == 422
    assert _error(response)["code"] == "validation_error"
    assert "cursor" in _error(response)["details"]


def test_json_nested_too_deeply_is_malformed(api: APIClient) -> None:
    body = "[" * 5000 + "]" * 5000
    response = api.post("/api/v1/sessions", body, content_type="application/json")
    assert response.status_code == 400
    assert _error(response)["code"] == "malformed_request"


def test_sessions_are_created_from_json_only(api: APIClient) -> None:
    response = api.post(
        "/api/v1/sessions", {"engine": "sandbox", "metadata": "x"}, format="multipart"
    )
    assert response.status_code == 415
    assert Session.objects.count() == 0


def test_too_many_form_fields_is_a_400(api: APIClient, settings) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    body = "&".join(f"f{i}=1" for i in range(10))
    response = api.generic(
        "POST",
        "/api/v1/sessions/00000000-0000-0000-0000-000000000001/start",
        body,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code in (400, 404)
    assert response["Content-Type"].startswith("application/json")
