"""Request ids and the request log line."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse

from gateway.core import logging as log_context

logger = logging.getLogger("gateway.request")

# A caller's id is reused only when it is safe to echo into headers and logs.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(request: HttpRequest) -> str:
    return getattr(request, "request_id", "")


def client_ip(request: HttpRequest) -> str:
    """The client's address: the connection's, or with TRUSTED_PROXY_COUNT proxies in front, the
    address the outermost of them saw (each appends to X-Forwarded-For, so what a client writes
    there itself is ignored)."""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if proxies and len(forwarded) >= proxies and forwarded[-proxies]:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


class RequestIdMiddleware:
    """Takes `X-Request-ID` from the caller (or makes one), binds it to every log line of the
    request, returns it as `X-Request-ID`, and writes one log line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]  # read by request_id_of
        started = time.monotonic()
        with log_context.bind(request_id=request_id):
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            level = logging.WARNING if response.status_code >= 500 else logging.INFO
            logger.log(
                level,
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        # Views outside DRF (admin, health) end up here; DRF's are logged by gateway.core.errors.
        if not isinstance(exception, _EXPECTED):
            logger.error("unhandled exception", exc_info=exception)


# Exceptions Django turns into a 4xx response by itself.
_EXPECTED = (Http404, PermissionDenied, BadRequest, SuspiciousOperation)
