"""OpenAPI pieces shared by every API view: the error body and the auth schemes."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Stable, machine-readable."),
                "message": serializers.CharField(help_text="For people."),
                "details": serializers.DictField(help_text="Field errors, request id, …"),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "The request does not match this schema (`validation_error` with the fields, "
    "`malformed_request` for a body that cannot be read).",
    401: "No or bad credentials (`not_authenticated`, `authentication_failed`).",
    403: "Not allowed (`permission_denied`; `forbidden_scope` when the credentials' scopes do not "
    "cover the action; `not_admin` when WhatsApp wants a group admin).",
    404: "No such object (`not_found`).",
    409: "Conflicts with the current state (or the session's engine refused it).",
    410: "Gone: it existed, and no longer works (`invite_revoked`).",
    413: "Body too large (`payload_too_large`).",
    415: "Unsupported content type (`unsupported_media_type`).",
    422: "Matches the schema, but its content cannot be accepted (`validation_error` with the "
    "fields, or a code of its own such as `idempotency_key_reused`).",
    429: "Rate limited (`rate_limited`); see `Retry-After`.",
    500: "Unexpected error (`internal_error`, with `details.request_id`).",
    503: "A dependency is down (`service_unavailable`).",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=…)`; 401, 403, 429 and 500 apply to every
    endpoint."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[code])
        for code in sorted({401, 403, 429, 500, *codes})
    }


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "gateway.core.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "Or `Authorization: Api-Key <key>`. Create keys in the admin, with "
            "`python manage.py create_api_key NAME` or `POST /api/v1/keys`; a key may be limited "
            "to some sessions and to scopes (`read`, `send`, `control`, `manage`).",
        }


class BackendJWTScheme(OpenApiAuthenticationExtension):
    target_class = "gateway.core.auth.BackendJWTAuthentication"
    name = "BackendJWT"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "gateway.core.auth.StaffSessionAuthentication"
    name = "StaffSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
