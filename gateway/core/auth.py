"""API authentication: API keys from the admin, JWTs signed by the backend, staff browser sessions.

`request.user` becomes an `ApiClient` for keys and tokens (with a stable `throttle_id` for rate
limits), or the Django user for a staff member using the API docs from a logged-in admin session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework_api_key.models import AbstractAPIKey, APIKey

CHALLENGE = 'Api-Key realm="api", Bearer realm="api"'
# The shape of keys made by djangorestframework-api-key: checked before any database lookup, so odd
# bytes in a header (NUL, non-ASCII) are refused as a bad key rather than reaching the database.
_KEY_SHAPE = re.compile(r"^[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}$")


@dataclass(frozen=True)
class ApiClient:
    """Who is calling: an API key (`api_key:<prefix>`) or the backend's JWT (`jwt:<sub>`)."""

    throttle_id: str
    name: str
    is_authenticated: bool = True
    is_staff: bool = False

    def __str__(self) -> str:
        return self.name


def _api_key_from(request: Request) -> str | None:
    header = request.META.get("HTTP_X_API_KEY")
    if header:
        return header.strip()
    keyword, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if keyword.lower() == "api-key" and value.strip():
        return value.strip()
    return None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key <key>` or `X-API-Key: <key>`; keys are stored hashed."""

    def authenticate(self, request: Request) -> tuple[ApiClient, AbstractAPIKey] | None:
        key = _api_key_from(request)
        if key is None:
            return None
        if not _KEY_SHAPE.match(key):
            raise exceptions.AuthenticationFailed("The API key is not valid.")
        try:
            api_key = APIKey.objects.get_from_key(key)
        except APIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("The API key is not valid.") from None
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("The API key has expired.")
        return ApiClient(throttle_id=f"api_key:{api_key.prefix}", name=api_key.name), api_key

    def authenticate_header(self, request: Request) -> str:
        return CHALLENGE


def decode_backend_jwt(token: str) -> dict[str, Any]:
    """Verify a backend token and return its claims, or raise `jwt.InvalidTokenError`.

    The key is chosen by the token's `alg`, and only that one algorithm is accepted with it: HS256
    with `BACKEND_JWT_SECRET`, RS256 with `BACKEND_JWT_PUBLIC_KEY`. So `alg=none` is refused, and an
    HS256 token signed with the public key as its secret (algorithm confusion) finds no key.
    """
    algorithm = jwt.get_unverified_header(token).get("alg")
    if algorithm == "HS256" and settings.BACKEND_JWT_SECRET:
        key = settings.BACKEND_JWT_SECRET
    elif algorithm == "RS256" and settings.BACKEND_JWT_PUBLIC_KEY:
        key = settings.BACKEND_JWT_PUBLIC_KEY
    else:
        raise jwt.InvalidAlgorithmError(f"Algorithm {algorithm!r} is not accepted.")
    claims = jwt.decode(
        token,
        key,
        algorithms=[algorithm],
        audience=settings.BACKEND_JWT_AUDIENCE or None,
        issuer=settings.BACKEND_JWT_ISSUER or None,
        leeway=10,
        options={
            "require": ["exp"],
            "verify_aud": bool(settings.BACKEND_JWT_AUDIENCE),
            "verify_iss": bool(settings.BACKEND_JWT_ISSUER),
        },
    )
    # RFC 7519 makes the times NumericDates; PyJWT converts a string ("9999999999") with int().
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise jwt.InvalidTokenError(f"The {name!r} claim must be a number.")
    return claims


class BackendJWTAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <jwt>` signed by the backend; `exp` required, `aud`/`iss` when set."""

    def authenticate(self, request: Request) -> tuple[ApiClient, dict[str, Any]] | None:
        keyword, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if keyword.lower() != "bearer":
            return None
        if not (settings.BACKEND_JWT_SECRET or settings.BACKEND_JWT_PUBLIC_KEY):
            raise exceptions.AuthenticationFailed("Bearer tokens are not configured here.")
        try:
            claims = decode_backend_jwt(token.strip())
        except jwt.ExpiredSignatureError:
            raise exceptions.AuthenticationFailed("The token has expired.") from None
        except jwt.PyJWTError as exc:
            raise exceptions.AuthenticationFailed(f"The token is not valid: {exc}") from None
        subject = str(claims.get("sub") or "backend")
        return ApiClient(throttle_id=f"jwt:{subject}", name=f"jwt:{subject}"), claims

    def authenticate_header(self, request: Request) -> str:
        return CHALLENGE


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """A staff member logged into the admin may use the API (from the API docs); CSRF applies."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None or not result[0].is_staff:
            return None
        return result


class IsApiClient(permissions.BasePermission):
    """An API key, a backend JWT, or an active staff user with the admin's permission on sessions
    (view to read, change to write), so the API gives staff no more than the admin does."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, ApiClient):
            return True
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        needed = "view" if request.method in permissions.SAFE_METHODS else "change"
        return user.has_perm(f"sessions_app.{needed}_session")
