"""API authentication: API keys from the admin, JWTs signed by the backend, staff browser sessions.

`request.user` becomes an `ApiClient` for keys and tokens (with a stable `throttle_id` for rate
limits, and what the caller may do: its scopes and sessions), or the Django user for a staff member
using the API docs from a logged-in admin session. What a scope allows, and the permission every
API view has, are in gateway/core/scopes.py.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import jwt
from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework_api_key.models import AbstractAPIKey, APIKey

from gateway.core.models import SCOPES, ScopedAPIKey

CHALLENGE = 'Api-Key realm="api", Bearer realm="api"'
# The shape of keys made by djangorestframework-api-key: checked before any database lookup, so odd
# bytes in a header (NUL, non-ASCII) are refused as a bad key rather than reaching the database.
_KEY_SHAPE = re.compile(r"^[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}$")


@dataclass(frozen=True)
class ApiClient:
    """Who is calling: an API key (`api_key:<prefix>`) or the backend's JWT (`jwt:<sub>`), and
    what it may do: `scopes` (None: all) and `sessions` (None: all; else these ids and, for a
    scoped key, `key_id`, the sessions that key created)."""

    throttle_id: str
    name: str
    is_authenticated: bool = True
    is_staff: bool = False
    scopes: frozenset[str] | None = None
    sessions: frozenset[str] | None = None
    key_id: str | None = None  # the ScopedAPIKey's pk, when the caller is one
    expires_at: Any = None  # the key's expiry (a datetime), when it has one
    # Whether the key created a session, as found out (a session's creator never changes).
    _created: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return self.name

    def allows(self, scope: str) -> bool:
        """Whether the caller may do what `scope` (read, send, control, manage) covers."""
        return self.scopes is None or scope in self.scopes

    @property
    def all_sessions(self) -> bool:
        return self.sessions is None

    def _known(self, session_id: str) -> bool | None:
        """The answer of may_see when it needs no database, else None."""
        if self.sessions is None or session_id in self.sessions:
            return True
        if self.key_id is None:
            return False
        return self._created.get(session_id)

    def may_see(self, session_id: Any) -> bool:
        """Whether the session exists for this caller: one of its sessions, or one its key
        created. (Synchronous: it may read the database once per session id; on an event loop,
        use `amay_see`.)"""
        session_id = str(session_id)
        known = self._known(session_id)
        if known is not None:
            return known
        created = ScopedAPIKey.objects.filter(
            pk=self.key_id, created_sessions__pk=session_id
        ).exists()
        self._created[session_id] = created
        return created

    async def amay_see(self, session_id: Any) -> bool:
        known = self._known(str(session_id))
        if known is not None:
            return known
        return await database_sync_to_async(self.may_see)(session_id)

    def visible_ids(self) -> frozenset[str] | None:
        """Every session id this caller may reach (None: all): its own and its key's."""
        if self.sessions is None:
            return None
        if self.key_id is None:
            return self.sessions
        created = ScopedAPIKey.objects.filter(pk=self.key_id).values_list(
            "created_sessions__pk", flat=True
        )
        return self.sessions | {str(pk) for pk in created if pk is not None}

    def covers(self, *, sessions: Iterable[Any] | None, scopes: Iterable[str] | None) -> bool:
        """Whether something limited to `sessions` and `scopes` (None: all) is within what this
        caller may do: a key it creates, a webhook endpoint it registers."""
        if scopes is None:
            if self.scopes is not None:
                return False
        elif not (self.scopes is None or set(scopes) <= self.scopes):
            return False
        if sessions is None:
            return self.sessions is None
        return all(self.may_see(session) for session in sessions)


def client_for_key(api_key: AbstractAPIKey) -> ApiClient:
    """The ApiClient of a key that authenticated: a ScopedAPIKey's limits, or full access."""
    scoped: ScopedAPIKey | None = getattr(api_key, "scopedapikey", None)
    if isinstance(api_key, ScopedAPIKey):
        scoped = api_key
    throttle_id, name = f"api_key:{api_key.prefix}", api_key.name
    if scoped is None:
        return ApiClient(throttle_id=throttle_id, name=name, expires_at=api_key.expiry_date)
    return ApiClient(
        throttle_id=throttle_id,
        name=name,
        expires_at=api_key.expiry_date,
        key_id=scoped.pk,
        scopes=None if scoped.scopes is None else frozenset(scoped.scopes),
        sessions=None if scoped.sessions is None else frozenset(map(str, scoped.sessions)),
    )


def _key_lookup(key: str) -> AbstractAPIKey:
    """The usable key (with its scopes, in the same query), or APIKey.DoesNotExist."""
    prefix, _, _ = key.partition(".")
    api_key = APIKey.objects.get_usable_keys().select_related("scopedapikey").get(prefix=prefix)
    if not api_key.is_valid(key):
        raise APIKey.DoesNotExist("Key is not valid.")
    return api_key


# Keys this process verified, by the SHA-256 of the presented key (never the key): when, the key's
# row, its ApiClient. Entries older than API_KEY_CACHE_SECONDS are read again, so a revoked, deleted
# or changed key takes effect within that long; keys that fail are never kept.
_verified: dict[str, tuple[float, AbstractAPIKey, ApiClient]] = {}
_VERIFIED_MAX = 1024
_clock = time.monotonic  # the tests move it


@receiver([post_save, post_delete])
def forget_verified_keys(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    """A key saved or deleted through this process takes effect in it at once (other processes
    see it within API_KEY_CACHE_SECONDS). Called with no arguments, forgets every key."""
    if instance is None or isinstance(instance, AbstractAPIKey):
        _verified.clear()


def _verified_key(key: str) -> tuple[AbstractAPIKey, ApiClient]:
    """The usable key and its ApiClient, from this process's cache when it is fresh enough."""
    ttl = settings.API_KEY_CACHE_SECONDS
    if not ttl:
        api_key = _key_lookup(key)
        return api_key, client_for_key(api_key)
    digest = hashlib.sha256(key.encode()).hexdigest()
    now = _clock()
    hit = _verified.get(digest)
    if hit is not None and now - hit[0] < ttl:
        _, api_key, client = hit
        return api_key, replace(client, _created={})  # what it found out stays in one request
    api_key = _key_lookup(key)
    client = client_for_key(api_key)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[digest] = (now, api_key, client)
    return api_key, client


def _claim_sessions(claims: dict[str, Any]) -> frozenset[str] | None:
    if "sessions" not in claims or claims["sessions"] is None:
        return None
    value = claims["sessions"]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise exceptions.AuthenticationFailed(
            "The token is not valid: `sessions` must be a list of session ids."
        )
    try:
        return frozenset(str(uuid.UUID(v)) for v in value)
    except ValueError:
        raise exceptions.AuthenticationFailed(
            "The token is not valid: `sessions` must be a list of session ids."
        ) from None


def _claim_scopes(claims: dict[str, Any]) -> frozenset[str] | None:
    """`scope`: space-separated (RFC 8693) or a list. Names the gateway does not know grant
    nothing here (the backend's token may carry its own scopes beside ours)."""
    if "scope" not in claims or claims["scope"] is None:
        return None
    value = claims["scope"]
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = value
    else:
        raise exceptions.AuthenticationFailed(
            "The token is not valid: `scope` must be a space-separated string or a list."
        )
    return frozenset(name for name in names if name in SCOPES)


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
            api_key, client = _verified_key(key)
        except APIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("The API key is not valid.") from None
        if api_key.has_expired:  # the expiry date it had when read: checked on every request
            raise exceptions.AuthenticationFailed("The API key has expired.")
        return client, api_key

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
        client = ApiClient(
            throttle_id=f"jwt:{subject}",
            name=f"jwt:{subject}",
            scopes=_claim_scopes(claims),
            sessions=_claim_sessions(claims),
        )
        return client, claims

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
    (view to read, change to write), so the API gives staff no more than the admin does. A view
    about another model names it in `staff_model` (`"core.scopedapikey"`)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if isinstance(user, ApiClient):
            return True
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        needed = "view" if request.method in permissions.SAFE_METHODS else "change"
        app, _, model = getattr(view, "staff_model", "sessions_app.session").partition(".")
        return user.has_perm(f"{app}.{needed}_{model}")


# Subprotocols that carry credentials (browsers cannot set headers on a WebSocket).
KEY_SUBPROTOCOL, BEARER_SUBPROTOCOL = "api-key.", "bearer."


def socket_client(scope: dict[str, Any]) -> ApiClient | None:
    """The caller of a WebSocket handshake (an ApiClient), from its headers (`X-API-Key`,
    `Authorization: Api-Key …`, `Authorization: Bearer …`) or its subprotocols (`api-key.<key>`,
    `bearer.<jwt>`); None without credentials or with bad ones. Synchronous (the database)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    meta = {}
    if headers.get("x-api-key"):
        meta["HTTP_X_API_KEY"] = headers["x-api-key"]
    if headers.get("authorization"):
        meta["HTTP_AUTHORIZATION"] = headers["authorization"]
    for protocol in scope.get("subprotocols") or []:
        if protocol.startswith(KEY_SUBPROTOCOL):
            meta["HTTP_X_API_KEY"] = protocol.removeprefix(KEY_SUBPROTOCOL)
        elif protocol.startswith(BEARER_SUBPROTOCOL):
            meta["HTTP_AUTHORIZATION"] = "Bearer " + protocol.removeprefix(BEARER_SUBPROTOCOL)
    request = SimpleNamespace(META=meta)
    for authenticator in (ApiKeyAuthentication(), BackendJWTAuthentication()):
        try:
            found = authenticator.authenticate(request)  # type: ignore[arg-type]
        except exceptions.AuthenticationFailed:
            return None
        if found is not None:
            return found[0]
    return None
