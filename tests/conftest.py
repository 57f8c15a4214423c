"""A small world for tests: API clients with real keys, staff users, sessions.

With GATEWAY_REQUIRE_SERVICES=1 (set by `make test`) the run refuses to start unless PostgreSQL,
Redis and S3 are configured and answer: integration tests never skip silently.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from gateway.core import tracing
from gateway.core.auth import forget_verified_keys
from gateway.core.logging import ContextFilter


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("GATEWAY_REQUIRE_SERVICES") != "1":
        return
    missing = [
        name
        for name, ok in [
            ("DATABASE_URL (PostgreSQL)", settings.PRODUCTION),
            ("REDIS_URL", bool(settings.REDIS_URL)),
            ("S3_BUCKET", bool(settings.S3_BUCKET)),
        ]
        if not ok
    ]
    for name, url in [
        ("Redis", settings.REDIS_URL),
        ("S3", settings.S3_ENDPOINT_URL),
        ("PostgreSQL", settings.DATABASE_URL),
    ]:
        parts = urlsplit(url)
        try:
            socket.create_connection((parts.hostname, parts.port or 80), timeout=2).close()
        except (OSError, TypeError):
            missing.append(f"{name} at {parts.hostname}:{parts.port} does not answer")
    if missing:
        pytest.exit("services required but missing: " + "; ".join(missing), returncode=3)


@pytest.fixture(autouse=True)
def _log_context(caplog: pytest.LogCaptureFixture) -> None:
    """caplog sees records with their correlation ids, as the JSON handler does."""
    caplog.handler.addFilter(ContextFilter())


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Rate-limit counters, QR codes and verified API keys must not leak from one test into the
    next."""
    cache.clear()
    forget_verified_keys()


@pytest.fixture(autouse=True)
def _rate_window_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate limits count in fixed windows of the wall clock: a test whose calls straddle a minute
    boundary would see its count start again (CI saw `1/min` let a second call through at
    00:09:00). The limiter reads a clock pinned a quarter second into a day, so every window
    from a second to a day holds for the whole test."""
    from types import SimpleNamespace

    from gateway.core import throttling

    pinned = 20_000 * 86_400 + 0.25
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: pinned))


@pytest.fixture(scope="session")
def _tracer_provider():
    """One SDK provider for the run, exporting to memory: OpenTelemetry's global provider can
    be set once per process."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider, exporter


@pytest.fixture
def spans(_tracer_provider):
    """Tracing on for one test (gateway.core.tracing with the run's provider and the
    instrumentations applied); yields the exporter, which holds this test's finished spans."""
    provider, exporter = _tracer_provider
    exporter.clear()
    tracing.setup(provider)
    yield exporter
    tracing.reset()
    exporter.clear()


@pytest.fixture
def make_api_key(db) -> Callable[..., str]:
    def make(name: str = "backend", **fields: object) -> str:
        return APIKey.objects.create_key(name=name, **fields)[1]

    return make


@pytest.fixture
def api_key(make_api_key: Callable[..., str]) -> str:
    return make_api_key()


@pytest.fixture
def make_scoped_key(db) -> Callable[..., tuple[APIClient, str]]:
    """A scoped API key (gateway/core/scopes.py): `sessions` and `scopes` lists, None for all.
    Returns an API client that uses it, and the key."""
    from gateway.core.models import ScopedAPIKey

    def make(
        sessions: list | None = None, scopes: list[str] | None = None, **fields: object
    ) -> tuple[APIClient, str]:
        fields.setdefault("name", "scoped")
        ids = None if sessions is None else [str(getattr(s, "pk", s)) for s in sessions]
        key = ScopedAPIKey.objects.create_key(sessions=ids, scopes=scopes, **fields)[1]
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=key)
        return client, key

    return make


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def api(api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    return client


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        "operator",
        "operator@example.com",
        "a-long-test-password",
        is_staff=True,
        is_superuser=True,
    )


@pytest.fixture
def make_session(db) -> Callable[..., object]:
    from sessions_app.models import Session

    def make(**fields: object) -> Session:
        fields.setdefault("engine", "sandbox")
        return Session.objects.create(**fields)

    return make


@pytest.fixture
def test_database_url() -> str:
    """DATABASE_URL pointing at the test database, for processes a test starts."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(os.environ["DATABASE_URL"])
    name = settings.DATABASES["default"]["NAME"]
    return urlunsplit(parts._replace(path=f"/{name}"))
