"""The client for the backend's worker protocol (README, "Running in production": the backend).

`POST {BACKEND_URL}/api/admin/workers/register` when a worker starts and
`PUT {BACKEND_URL}/api/admin/workers/{id}/heartbeat` every `BACKEND_HEARTBEAT_SECONDS`, with
timeouts, `Authorization: Bearer BACKEND_TOKEN` when set, and a circuit breaker per backend. A
backend that is down never stops the worker; heartbeats are not queued (the next one carries the
latest figures).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from django.conf import settings

from gateway.outbox.breaker import CircuitBreaker

logger = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class BackendUnavailable(Exception):
    pass


class BackendClient:
    def __init__(self, base_url: str | None = None, token: str | None = None) -> None:
        self.base_url = (base_url if base_url is not None else settings.BACKEND_URL).rstrip("/")
        token = settings.BACKEND_TOKEN if token is None else token
        headers = {"User-Agent": f"whatsapp-gateway/{settings.VERSION}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.AsyncClient(timeout=TIMEOUT, headers=headers, follow_redirects=False)
        self.breaker = CircuitBreaker(self.base_url)

    async def _call(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        if not await asyncio.to_thread(self.breaker.allow):
            raise BackendUnavailable("circuit open")
        try:
            response = await self.http.request(method, f"{self.base_url}{path}", json=body)
        except httpx.HTTPError as exc:
            await asyncio.to_thread(self.breaker.failure)
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            await asyncio.to_thread(self.breaker.failure)
            raise BackendUnavailable(f"{method} {path} answered {response.status_code}")
        await asyncio.to_thread(self.breaker.success)
        if response.status_code >= 400:
            raise BackendUnavailable(f"{method} {path} answered {response.status_code}")
        return response

    async def register(self, body: dict[str, Any]) -> str:
        """Register the worker; returns the id the backend gave it (or ours, if it gave none)."""
        response = await self._call("POST", "/api/admin/workers/register", body)
        try:
            data = response.json()
        except ValueError:
            data = {}
        given = data.get("id") if isinstance(data, dict) else None
        return str(given or body["worker_id"])

    async def heartbeat(self, backend_id: str, body: dict[str, Any]) -> None:
        await self._call("PUT", f"/api/admin/workers/{backend_id}/heartbeat", body)

    async def close(self) -> None:
        await self.http.aclose()
