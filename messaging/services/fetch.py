"""Fetching `media.url` without letting callers reach our own network (SSRF).

Every URL, and each redirect, is judged by the floor's guard (gateway/core/urlguard.py: public
unicast addresses only, or the networks in MEDIA_FETCH_ALLOWED_NETWORKS) and the connection goes
to the checked address itself. One deadline (`MEDIA_FETCH_TIMEOUT_SECONDS`) covers resolving,
connecting, headers, body and every redirect, so a server that trickles bytes cannot hold a
request longer. Every refusal happens before any connection to the refused address.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from django.conf import settings

from gateway.core.urlguard import UrlRefused, checked_target

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str
    filename: str


def fetch(url: str, *, max_bytes: int) -> Fetched:
    """GET `url` (following checked redirects) and return its body, at most `max_bytes`, all
    within `MEDIA_FETCH_TIMEOUT_SECONDS`. Raises UrlRefused."""
    seconds = settings.MEDIA_FETCH_TIMEOUT_SECONDS
    try:
        return asyncio.run(asyncio.wait_for(_fetch(url, max_bytes), seconds))
    except TimeoutError:
        raise UrlRefused(
            "url_timeout", f"The URL took longer than {seconds} s to download."
        ) from None


async def _fetch(url: str, max_bytes: int) -> Fetched:
    timeout = aiohttp.ClientTimeout(total=None, connect=5.0)  # the whole fetch: one deadline
    async with aiohttp.ClientSession(
        timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            pinned, host_header, server_name = await checked_target(
                url, allowed=settings.MEDIA_FETCH_ALLOWED_NETWORKS
            )
            try:
                async with client.get(
                    pinned,
                    headers={"Host": host_header, "User-Agent": "whatsapp-gateway"},
                    server_hostname=server_name,
                    allow_redirects=False,
                ) as response:
                    if response.status in REDIRECTS:
                        url = _redirected(url, response.headers.get("location", ""))
                        continue
                    if response.status != 200:
                        raise UrlRefused("url_fetch_failed", f"The URL answered {response.status}.")
                    return await _read(response, url, max_bytes)
            except aiohttp.ClientError as exc:
                raise UrlRefused(
                    "url_fetch_failed", f"The URL could not be fetched ({type(exc).__name__})."
                ) from None
    raise UrlRefused("url_fetch_failed", f"More than {MAX_REDIRECTS} redirects.")


def _redirected(url: str, location: str) -> str:
    try:
        return urljoin(url, location)
    except ValueError:
        raise UrlRefused("url_invalid", "A redirect went to an invalid URL.") from None


async def _read(response: aiohttp.ClientResponse, url: str, max_bytes: int) -> Fetched:
    too_large = UrlRefused(
        "payload_too_large", f"The file is larger than {max_bytes} bytes.", status=413
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    return Fetched(b"".join(chunks), content_type, urlsplit(url).path.rsplit("/", 1)[-1])
