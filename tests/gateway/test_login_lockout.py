"""Admin logins are locked per user and address after repeated wrong passwords (django-axes)."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password"


def log_in(client: Client, password: str, address: str = "203.0.113.7", **headers: str):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "operator", "password": password},
        REMOTE_ADDR=address,
        **headers,
    )


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.mark.smoke
def test_wrong_passwords_lock_the_user_out_from_that_address(
    client: Client, staff_user, caplog, settings
) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "wrong").status_code == 200  # the form again, with its error
    with caplog.at_level(logging.WARNING):
        locked = log_in(client, "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert any("locking out" in r.getMessage().lower() for r in caplog.records)

    # The right password no longer helps from there…
    assert log_in(client, PASSWORD).status_code == 429
    assert not logged_in(client)
    # …but the operator still logs in from their own address.
    assert log_in(Client(), PASSWORD, address="198.51.100.20").status_code == 302


def test_thirty_guesses_then_the_right_password_do_not_get_in(client: Client, staff_user) -> None:
    for _ in range(30):
        log_in(client, "guess")
    assert log_in(client, PASSWORD).status_code == 429
    assert not logged_in(client)


def test_a_success_clears_the_count(client: Client, staff_user, settings) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302


def test_a_client_cannot_pick_its_address_through_x_forwarded_for(
    client: Client, staff_user, settings
) -> None:
    """Without a trusted proxy the header is ignored; with one, its own entry counts."""
    for n in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert log_in(client, PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 429

    settings.TRUSTED_PROXY_COUNT = 1
    proxied = {"address": "10.0.0.2"}  # the proxy; it appends the real client last
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(Client(), "wrong", **proxied, HTTP_X_FORWARDED_FOR="1.1.1.1, 198.51.100.9")
    blocked = log_in(Client(), PASSWORD, **proxied, HTTP_X_FORWARDED_FOR="198.51.100.9")
    assert blocked.status_code == 429
    other = log_in(Client(), PASSWORD, **proxied, HTTP_X_FORWARDED_FOR="198.51.100.10")
    assert other.status_code == 302
