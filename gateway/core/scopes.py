"""Who may do what: the one place that decides, for every API view, the WebSockets and the event
stream.

A caller (an `ApiClient`, gateway/core/auth.py) has scopes and sessions:

| scope     | allows                                                                    |
| --------- | ------------------------------------------------------------------------- |
| `read`    | every GET (sessions, messages, chats, groups, contacts, QR codes, events)  |
| `send`    | every other write about a session (messages, read receipts, presence,      |
|           | groups, blocklist, profile)                                               |
| `control` | creating sessions and their lifecycle: start, stop, restart, logout,       |
|           | migrate, delete, linking (pairing code, ws-token), the sandbox controls    |
| `manage`  | API keys, webhook endpoints, workers                                      |

A view says what it needs with `required_scope`: one scope, or a dict by HTTP method; without it,
`read` for safe methods and `send` for the others. `gateway_wide = True` marks a view about the
whole gateway (the workers): a caller limited to some sessions may not use it.

A session the caller may not see does not exist for it: every view with a `session_id` in its
URL answers the same 404 as for an unknown session (checked here, before the view runs), and
lists show only the sessions it may see. An action outside its scopes is 403 `forbidden_scope`
(`gateway.core.errors.ForbiddenScope`).

Staff members in a browser session keep the admin's rules (`IsApiClient`).
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from gateway.core.auth import ApiClient, IsApiClient
from gateway.core.models import SCOPES

# Not gateway.core.errors at the top: DRF imports this module (DEFAULT_PERMISSION_CLASSES) while
# gateway.core.errors is importing DRF's views. ForbiddenScope lives there.

__all__ = [
    "SCOPES",
    "HasScope",
    "client_of",
    "ensure_visible",
    "required_scope_of",
]


def required_scope_of(view: Any, method: str) -> str:
    """The scope a request needs: the view's `required_scope` (one, or by method), else `read`
    for safe methods and `send` for the others."""
    declared = getattr(view, "required_scope", None)
    if isinstance(declared, dict):
        declared = declared.get(method.upper())
    if declared:
        assert declared in SCOPES, declared
        return str(declared)
    return "read" if method.upper() in permissions.SAFE_METHODS else "send"


def client_of(request: Request) -> ApiClient | None:
    """The caller when it is a key or a JWT (None for a staff member: no limits of this kind)."""
    user = getattr(request, "user", None)
    return user if isinstance(user, ApiClient) else None


def not_found() -> exceptions.NotFound:
    """The 404 of a session that does not exist (sessions_app.selectors.session_get's)."""
    return exceptions.NotFound("Not found.")


def ensure_visible(request: Request, session_id: Any) -> None:
    """404, as for an unknown session, unless the caller may see the session (for views whose
    URL names an object of a session rather than the session: `GET /messages/{id}`)."""
    client = client_of(request)
    if client is not None and not client.may_see(session_id):
        raise not_found()


class HasScope(IsApiClient):
    """Every API view's permission (settings DEFAULT_PERMISSION_CLASSES): authenticated as
    `IsApiClient` says, then the scope the view needs (403 `forbidden_scope`), then the session
    of the URL (404 when the caller may not see it)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        client = client_of(request)
        if client is None:
            return True
        from gateway.core.errors import ForbiddenScope

        scope = required_scope_of(view, request.method or "GET")
        if not client.allows(scope):
            raise ForbiddenScope(scope)
        if getattr(view, "gateway_wide", False) and not client.all_sessions:
            raise ForbiddenScope(
                scope,
                "This is about the whole gateway; these credentials are limited to some sessions.",
            )
        session_id = getattr(view, "kwargs", {}).get("session_id")
        if session_id is not None and not client.may_see(session_id):
            raise not_found()
        return True
