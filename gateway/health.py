"""`/health` (the process answers) and `/health/ready` (its dependencies answer)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from django.core.cache import cache
from django.core.files.storage import storages
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    # A key per probe: concurrent probes must not read each other's writes.
    key, nonce = f"health:ready:{uuid.uuid4().hex}", uuid.uuid4().hex
    cache.set(key, nonce, 10)
    if cache.get(key) != nonce:
        raise RuntimeError("the cache did not return what was written")
    cache.delete(key)


async def _channel_round_trip() -> None:
    # A layer of its own for each check: the shared one is bound to one event loop, and concurrent
    # probes from a threaded server would trip over each other's receive().
    layer = channel_layers.make_backend("default")
    try:
        channel = await layer.new_channel("health.")
        await layer.send(channel, {"type": "health.ping"})
        await asyncio.wait_for(layer.receive(channel), timeout=3)
    finally:
        if hasattr(layer, "close_pools"):
            await layer.close_pools()


def _channel_layer() -> None:
    async_to_sync(_channel_round_trip)()


def _storage() -> None:
    for alias in ("default", "sessions"):
        storages[alias].exists("health-check")


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "cache": _cache,
    "channel_layer": _channel_layer,
    "storage": _storage,
}


@require_GET
@never_cache
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def ready(request: HttpRequest) -> JsonResponse:
    """200 when every dependency answers; 503 naming those that did not. Errors are logged in full
    but only their type is shown, since this endpoint needs no credentials."""
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
            results[name] = {"ok": True}
        except Exception as exc:
            logger.warning("readiness check %s failed", name, exc_info=True)
            results[name] = {"ok": False, "error": type(exc).__name__}
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    failed = [name for name, result in results.items() if not result["ok"]]
    body = {"status": "unavailable" if failed else "ok", "failed": failed, "checks": results}
    return JsonResponse(body, status=503 if failed else 200)
