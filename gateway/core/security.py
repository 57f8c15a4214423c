"""Content-Security-Policy for every response, by what the path serves.

| path | policy |
| --- | --- |
| `/media/…` | `sandbox; default-src 'none'`: whatever a stored file is, nothing in it runs |
| `/api/docs/`, `/api/redoc/` | the API docs' own scripts and styles, nothing from outside |
| `/api/…`, `/health`, `/metrics` | `default-src 'none'`: JSON and text, never a document |
| `/link/…` | the link page's own script, style and QR image; embeddable by `LINK_FRAME_ANCESTORS` |
| everything else (the admin) | only the gateway's own scripts, styles and WebSockets |

A view may set its own policy; this one is added only where none is set.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def _policy(**directives: str) -> str:
    return "; ".join(
        f"{name.replace('_', '-')} {value}".strip() for name, value in directives.items()
    )


MEDIA = "sandbox; default-src 'none'"
API = _policy(default_src="'none'", frame_ancestors="'none'")
DOCS = _policy(
    default_src="'none'",
    script_src="'self'",
    # Swagger UI and ReDoc set styles inline; ReDoc runs its search in a blob: worker.
    style_src="'self' 'unsafe-inline'",
    img_src="'self' data:",
    font_src="'self'",
    connect_src="'self'",
    worker_src="blob:",
    base_uri="'none'",
    form_action="'none'",
    frame_ancestors="'none'",
)
PAGES = _policy(
    default_src="'self'",
    script_src="'self'",
    style_src="'self'",
    img_src="'self' data:",
    connect_src="'self'",  # with CSP 3, 'self' includes ws:/wss: to this host
    object_src="'none'",
    base_uri="'self'",
    form_action="'self'",
    frame_ancestors="'none'",
)


def link_policy() -> str:
    return _policy(
        default_src="'none'",
        script_src="'self'",
        style_src="'self'",
        img_src="'self' data:",  # the QR code is a data: URL
        connect_src="'self'",
        base_uri="'none'",
        form_action="'none'",
        frame_ancestors=" ".join(settings.LINK_FRAME_ANCESTORS),
    )


def policy_for(path: str) -> str:
    if path.startswith("/media/"):
        return MEDIA
    if path.startswith(("/api/docs/", "/api/redoc/")):
        return DOCS
    if path.startswith("/link/"):
        return link_policy()
    if path.startswith("/api/") or path in ("/health", "/health/ready", "/metrics"):
        return API
    return PAGES


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", policy_for(request.path))
        return response
