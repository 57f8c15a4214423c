"""One shape for every API error: `{"error": {"code", "message", "details"}}`.

Views raise `ApiError` subclasses (or DRF's own exceptions); `exception_handler` shapes them all,
including Django's 404 and request-size errors, and turns anything unexpected into a JSON 500 that
carries the request id (and is logged with its traceback).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from gateway.core.contract import ContractViolation
from gateway.core.middleware import request_id_of

# The name operators filter on (it was this before the module moved to gateway/core/).
logger = logging.getLogger("gateway.errors")


class ApiError(Exception):
    """An error that says what it is: a stable machine-readable `code`, its HTTP `status`, a
    message and optional `details` (and `wait`, seconds, for a Retry-After). Services raise these
    (or their own subclasses) and views let them through: `exception_handler` shapes them all.
    """

    status: int = status.HTTP_400_BAD_REQUEST
    code = "bad_request"
    message = "The request is not valid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        wait: float | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or {}
        self.wait = wait


class NotFound(ApiError):
    status: int = status.HTTP_404_NOT_FOUND
    code = "not_found"
    message = "Not found."


class Conflict(ApiError):
    status: int = status.HTTP_409_CONFLICT
    code = "conflict"
    message = "The request conflicts with the current state."


class Unprocessable(ApiError):
    status: int = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"
    message = "The request cannot be processed."


class InvalidValue(ApiError):
    """A request that matches the schema but names a value that cannot be (a number impossible
    for its country code, a group where only users make sense, a time in the past): 422
    `validation_error`, the code the schema's own checks answer with."""

    status: int = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "validation_error"
    message = "The request is well-formed, but its content is not valid."


class ForbiddenScope(ApiError):
    """The credentials' scopes do not cover the action (gateway/core/scopes.py)."""

    status: int = status.HTTP_403_FORBIDDEN
    code = "forbidden_scope"
    message = "These credentials may not do that."

    def __init__(self, scope: str | None = None, message: str | None = None) -> None:
        if message is None and scope is not None:
            message = f"This needs the `{scope}` scope, which the credentials do not have."
        super().__init__(message, details={"scope": scope} if scope else None)


class PayloadTooLarge(ApiError):
    status: int = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"
    message = "The request body is too large."


class RateLimited(ApiError):
    status: int = status.HTTP_429_TOO_MANY_REQUESTS
    code = "rate_limited"
    message = "Too many requests; try again later."


class ServiceUnavailable(ApiError):
    status: int = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"
    message = "A service the gateway depends on is unavailable; try again."


# DRF exception class → our code, where DRF's own code is not the one we document.
_CODES: dict[type[Exception], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "validation_error",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def exc_body(exc: ApiError) -> dict[str, Any]:
    return error_body(exc.code, exc.message, exc.details)


def exc_headers(exc: ApiError) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(exc.wait)))} if exc.wait else {}


def error_response(exc: ApiError) -> JsonResponse:
    """An ApiError as a plain Django response, for views outside DRF (the link page)."""
    return JsonResponse(exc_body(exc), status=exc.status, headers=exc_headers(exc))


def _translate(exc: Exception) -> Exception:
    """Django exceptions that DRF leaves alone, as DRF exceptions."""
    if isinstance(exc, Http404):
        return exceptions.NotFound("Not found.")
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return ApiError("The request has too many fields or files.", code="too_many_fields")
    if isinstance(exc, SuspiciousOperation):
        return ApiError("The request is not valid.", code="bad_request")
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    exc = _translate(exc)
    request = context.get("request")
    if not isinstance(exc, exceptions.APIException | ApiError):
        logger.error(
            "unhandled exception in %s", context.get("view").__class__.__name__, exc_info=exc
        )
        set_rollback()
        request_id = request_id_of(request) if request is not None else ""
        return Response(
            error_body(
                "internal_error",
                "An unexpected error occurred; it has been logged.",
                {"request_id": request_id},
            ),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    if isinstance(exc, ApiError):
        set_rollback()
        return Response(exc_body(exc), status=exc.status, headers=exc_headers(exc))

    headers: dict[str, str] = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if wait := getattr(exc, "wait", None):  # DRF's Throttled
        headers["Retry-After"] = str(max(1, math.ceil(wait)))

    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body("validation_error", "The request has invalid fields.", details)
        if getattr(request, "contract_checked", False) and not isinstance(exc, ContractViolation):
            # It matched the schema (gateway.core.contract), so what is wrong is its content.
            body["error"]["message"] = "The request is well-formed, but its content is not valid."
            set_rollback()
            return Response(body, status=status.HTTP_422_UNPROCESSABLE_ENTITY, headers=headers)
    else:
        code = _CODES.get(type(exc)) or next(
            (c for cls, c in _CODES.items() if isinstance(exc, cls)), exc.default_code
        )
        body = error_body(code, str(exc.detail))
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


# --- Django's own error views, for URLs outside DRF views ----------------------------------------


def _django_error(request: HttpRequest, status_code: int, code: str, message: str):
    if request.path.startswith("/api/"):
        details = {"request_id": request_id_of(request)} if status_code >= 500 else {}
        return JsonResponse(error_body(code, message, details), status=status_code)
    return None


def handler400(request: HttpRequest, exception: Exception):
    from django.views import defaults

    return _django_error(
        request, 400, "bad_request", "The request is not valid."
    ) or defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception):
    from django.views import defaults

    return _django_error(
        request, 403, "permission_denied", "Permission denied."
    ) or defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception):
    from django.views import defaults

    return _django_error(request, 404, "not_found", "Not found.") or defaults.page_not_found(
        request, exception
    )


def handler500(request: HttpRequest):
    from django.views import defaults

    return _django_error(
        request, 500, "internal_error", "An unexpected error occurred; it has been logged."
    ) or defaults.server_error(request)
