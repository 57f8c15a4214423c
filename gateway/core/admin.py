"""Admin pieces every app's admin uses: live status badges and "… ago" times; and the floor's own
page, the scoped API keys."""

from datetime import datetime

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from rest_framework_api_key.admin import APIKeyModelAdmin

from gateway.core.models import ScopedAPIKey


class LiveMedia:
    """The admin's live parts (gateway/static/gateway/admin-live.js): ticking "… ago" times and,
    on session pages, badges, QR and timeline over the sessions' WebSockets (the QR drawn there
    from its text, by qr-image.js with the vendored encoder qrcode.js)."""

    css = {"all": ["gateway/admin-live.css"]}
    js = ["gateway/qrcode.js", "gateway/qr-image.js", "gateway/admin-live.js"]


def _data(data: dict[str, object]) -> SafeString:
    """data- attributes (what the live script looks elements up by)."""
    return format_html_join(
        "", ' data-{}="{}"', ((k.replace("_", "-"), v) for k, v in data.items())
    )


def badge(status: str, **data: object) -> SafeString:
    """A coloured status badge."""
    return format_html(
        '<span class="gw-badge" data-status="{}"{}>{}</span>', status, _data(data), status
    )


def ago(moment: datetime | None, *, stale_after: int = 0, **data: object) -> SafeString:
    """`12 s ago`, kept current in the browser; shown in red once older than `stale_after` s."""
    if moment is None:  # still a <time>, for the live script to fill in
        return format_html("<time data-ago{}>-</time>", _data(data))
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    if seconds < 60:
        text = f"{seconds} s ago"
    elif seconds < 3600:
        text = f"{seconds // 60} min ago"
    elif seconds < 86400:
        text = f"{seconds // 3600} h ago"
    else:
        text = f"{seconds // 86400} d ago"
    return format_html(
        '<time datetime="{}" title="{}" data-ago data-stale-after="{}"{}{}>{}</time>',
        moment.isoformat(),
        timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z"),
        stale_after,
        _data(data),
        mark_safe(' class="gw-stale"') if stale_after and seconds > stale_after else "",
        text,
    )


# --- Scoped API keys (gateway/core/models.py) -----------------------------------------------------


class ScopedAPIKeyAdmin(APIKeyModelAdmin):
    """djangorestframework-api-key's admin (the key is shown once, on creation), with the key's
    sessions and scopes. Plain API keys (full access) stay under "API keys"."""

    list_display = (*APIKeyModelAdmin.list_display, "sessions", "scopes")  # type: ignore[assignment]
    fields = ("prefix", "name", "sessions", "scopes", "expiry_date", "revoked")


admin.site.register(ScopedAPIKey, ScopedAPIKeyAdmin)
