from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

pytestmark = pytest.mark.django_db


@pytest.mark.smoke
def test_create_api_key_prints_a_working_key_as_its_last_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "backend-prod", stdout=out, stderr=err)

    key = out.getvalue().strip().splitlines()[-1]
    assert APIKey.objects.get().name == "backend-prod"
    assert key not in APIKey.objects.get().hashed_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/sessions").status_code == 200


def test_ensure_superuser_creates_the_first_admin_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "admin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-test-password")
    call_command("ensure_superuser", stdout=io.StringIO())
    call_command("ensure_superuser", stdout=io.StringIO())  # a second run changes nothing

    user = get_user_model().objects.get()
    assert (user.username, user.is_superuser) == ("admin", True)
    assert user.check_password("a-long-test-password")


def test_ensure_superuser_says_how_when_it_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    out = io.StringIO()
    call_command("ensure_superuser", stdout=out)
    assert "createsuperuser" in out.getvalue()
    assert not get_user_model().objects.exists()
