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

import aiohttp
from django.conf import settings

from gateway.outbox.breaker import CircuitBreaker

logger = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=10.0, connect=3.0)


class BackendUnavailable(Exception):
    pass


class BackendClient:
    def __init__(self, base_url: str | None = None, token: str | None = None) -> None:
        self.base_url = (base_url if base_url is not None else settings.BACKEND_URL).rstrip("/")
        token = settings.BACKEND_TOKEN if token is None else token
        headers = {"User-Agent": f"whatsapp-gateway/{settings.VERSION}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.headers = headers
        self.http: aiohttp.ClientSession | None = None  # made in the loop, at the first call
        self.breaker = CircuitBreaker(self.base_url)

    async def _call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        """The backend's JSON answer (None when it is not JSON)."""
        if not await asyncio.to_thread(self.breaker.allow):
            raise BackendUnavailable("circuit open")
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=TIMEOUT, headers=self.headers)
        try:
            async with self.http.request(
                method, f"{self.base_url}{path}", json=body, allow_redirects=False
            ) as response:
                status = response.status
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            await asyncio.to_thread(self.breaker.failure)
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if status >= 500 or status == 429:
            await asyncio.to_thread(self.breaker.failure)
            raise BackendUnavailable(f"{method} {path} answered {status}")
        await asyncio.to_thread(self.breaker.success)
        if status >= 400:
            raise BackendUnavailable(f"{method} {path} answered {status}")
        return data

    async def register(self, body: dict[str, Any]) -> str:
        """Register the worker; returns the id the backend gave it (or ours, if it gave none)."""
        data = await self._call("POST", "/api/admin/workers/register", body)
        given = data.get("id") if isinstance(data, dict) else None
        return str(given or body["worker_id"])

    async def heartbeat(self, backend_id: str, body: dict[str, Any]) -> None:
        await self._call("PUT", f"/api/admin/workers/{backend_id}/heartbeat", body)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
