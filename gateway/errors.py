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

from gateway.contract import ContractViolation
from gateway.middleware import request_id_of

logger = logging.getLogger("gateway.errors")


class ApiError(exceptions.APIException):
    """An error with a stable machine-readable `code`; subclasses set the status and code."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"
    default_detail = "The request is not valid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.default_detail, code or self.default_code)
        self.code = code or self.default_code
        self.details = details or {}


class Conflict(ApiError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with the current state."


class Unprocessable(ApiError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "unprocessable"
    default_detail = "The request cannot be processed."


class PayloadTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


class ServiceUnavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"
    default_detail = "A service the gateway depends on is unavailable; try again."


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
    if not isinstance(exc, exceptions.APIException):
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

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))

    if isinstance(exc, ApiError):
        body = error_body(exc.code, str(exc.detail), exc.details)
    elif isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body("validation_error", "The request has invalid fields.", details)
        if getattr(request, "contract_checked", False) and not isinstance(exc, ContractViolation):
            # It matched the schema (gateway.contract), so what is wrong is its content.
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


def handler400(request: HttpRequest, exception: Exception | None = None):
    from django.views import defaults

    return _django_error(
        request, 400, "bad_request", "The request is not valid."
    ) or defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception | None = None):
    from django.views import defaults

    return _django_error(
        request, 403, "permission_denied", "Permission denied."
    ) or defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception | None = None):
    from django.views import defaults

    return _django_error(request, 404, "not_found", "Not found.") or defaults.page_not_found(
        request, exception
    )


def handler500(request: HttpRequest):
    from django.views import defaults

    return _django_error(
        request, 500, "internal_error", "An unexpected error occurred; it has been logged."
    ) or defaults.server_error(request)
