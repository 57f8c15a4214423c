from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema() -> dict:
    out = io.StringIO()
    call_command("spectacular", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_schema_builds_without_warnings(schema: dict) -> None:
    paths = set(schema["paths"])
    assert {
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}",
        "/api/v1/workers",
        "/api/v1/sessions/{session_id}/start",
        "/api/v1/workers/{worker_id}",
    } <= paths


def test_every_operation_documents_auth_and_its_errors(schema: dict) -> None:
    for path, method, operation in _operations(schema):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert {"ApiKey": []} in operation["security"], where
        assert {"401", "429"} <= set(operation["responses"]), where
        error = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}, where
        if "{" in path:
            assert "404" in operation["responses"], where
        if method == "post" and path.endswith("/sessions"):
            assert {"200", "201", "400"} <= set(operation["responses"]), where


@pytest.mark.smoke
def test_the_docs_are_served_without_credentials(client: Client) -> None:
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/schema/").status_code == 200
