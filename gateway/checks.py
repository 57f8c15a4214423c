"""System checks for dangerous combinations of settings.

They run with every management command (`serve`, `run_worker`, `migrate`) and with
`manage.py check --deploy`. Errors stop those commands; warnings are printed.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register("gateway")
def check_settings(app_configs, **kwargs):
    problems: list[CheckMessage] = []
    production = settings.PRODUCTION
    if production and settings.DEBUG:
        problems.append(
            Error(
                "DEBUG is on with a production (PostgreSQL) database.",
                hint="Set DEBUG=false. DEBUG shows settings and stack traces to anyone.",
                id="gateway.E001",
            )
        )
    if production and not settings.SESSION_ENCRYPTION_KEY:
        problems.append(
            Error(
                "SESSION_ENCRYPTION_KEY is not set.",
                hint="Auth snapshots (the keys to WhatsApp accounts) are encrypted with it. "
                "Generate one with `openssl rand -base64 32`; every process needs the same value.",
                id="gateway.E002",
            )
        )
    if settings.BACKEND_URL and not settings.WEBHOOK_SECRET and production:
        problems.append(
            Error(
                "BACKEND_URL is set but WEBHOOK_SECRET is not.",
                hint="Webhooks must be signed so the backend can tell them from forgeries.",
                id="gateway.E003",
            )
        )
    if production and settings.BACKEND_URL.startswith("http://"):
        problems.append(
            Warning(
                "BACKEND_URL is plain http.",
                hint=(
                    "Webhooks carry message contents and QR codes; use https "
                    "outside a private network."
                ),
                id="gateway.W001",
            )
        )
    if production and settings.SANDBOX_ENABLED:
        problems.append(
            Warning(
                "SANDBOX_ENABLED is on in production.",
                hint=("The sandbox controls let any API client fake inbound messages and logouts."),
                id="gateway.W002",
            )
        )
    if production and not settings.REDIS_URL:
        problems.append(
            Warning(
                "REDIS_URL is not set in production.",
                hint=(
                    "Without Redis, QR codes, rate limits and WebSocket pushes "
                    "stay inside one process."
                ),
                id="gateway.W003",
            )
        )
    if production and not settings.S3_BUCKET:
        problems.append(
            Warning(
                "S3_BUCKET is not set in production.",
                hint=(
                    "Auth snapshots on a local disk cannot be restored by a "
                    "worker on another machine."
                ),
                id="gateway.W004",
            )
        )
    if production and not settings.PUBLIC_URL:
        problems.append(
            Warning(
                "PUBLIC_URL is not set in production.",
                hint=(
                    "Links sent to end users (the QR link page) need this gateway's public address."
                ),
                id="gateway.W005",
            )
        )
    if settings.VAR_DIR.exists() and settings.VAR_DIR.stat().st_mode & 0o077:
        problems.append(
            Warning(
                f"{settings.VAR_DIR} can be read by other users.",
                hint="It holds the embedded database, media and the keys to WhatsApp accounts; "
                "the gateway could not make it 0700 (another user owns it): `chmod 700` it.",
                id="gateway.W006",
            )
        )
    for name in ("MEDIA_FETCH_ALLOWED_NETWORKS", "WEBHOOK_ALLOWED_NETWORKS"):
        for network in getattr(settings, name):
            try:
                ipaddress.ip_network(network)
            except ValueError:
                problems.append(
                    Error(
                        f"{name} has {network!r}, which is not a network.",
                        hint="Give networks as addresses or CIDR blocks: 10.1.2.0/24, fd00::/8.",
                        id="gateway.E004",
                    )
                )
    return problems


def refuse_serious_problems() -> None:
    """Web servers (gunicorn, uvicorn) run no system checks: they call this instead, so a production
    install with an error-level problem refuses to serve rather than serving insecurely."""
    from django.core.checks import run_checks
    from django.core.exceptions import ImproperlyConfigured

    serious = [problem for problem in run_checks(tags=["gateway"]) if problem.is_serious()]
    if serious:
        raise ImproperlyConfigured("; ".join(f"{p.id}: {p.msg} {p.hint}" for p in serious))
