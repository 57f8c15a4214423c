import json
from datetime import datetime

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from gateway import webhooks
from gateway.models import WebhookDelivery


class LiveMedia:
    """The admin's live parts (gateway/static/gateway/admin-live.js): ticking "… ago" times and,
    on session pages, badges, QR and timeline over the sessions' WebSockets."""

    css = {"all": ["gateway/admin-live.css"]}
    js = ["gateway/admin-live.js"]


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


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The outbox: what was sent to the backend, what it answered, and replay. Read-only but for
    the replay action (the same `webhook-id`: the backend dedupes on it)."""

    list_display = [
        "created_at",
        "event_type",
        "session",
        "sequence",
        "status_badge",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    ]
    list_filter = ["status", "event_type", "target", "last_status_code"]
    list_select_related = ["session"]
    search_fields = ["event_id", "session__id", "session__external_id", "target"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "event_id",
        "event_type",
        "target",
        "session",
        "sequence",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "delivered_at",
        "created_at",
        "request",
        "last_status_code",
        "last_error",
        "last_response",
        "breaker",
    ]
    fields = readonly_fields
    actions = ["replay"]
    Media = LiveMedia

    @admin.display(description="status", ordering="status")
    def status_badge(self, delivery: WebhookDelivery):
        colour = {"delivered": "connected", "pending": "starting", "dead": "failed"}
        return format_html(
            '<span class="gw-badge" data-status="{}">{}</span>',
            colour.get(delivery.status, delivery.status),
            delivery.status,
        )

    @admin.display(description="request")
    def request(self, delivery: WebhookDelivery):
        """What is posted (headers as of now: the timestamp and signature are made per attempt)."""
        body = webhooks.body_of(delivery)
        headers = webhooks.signed_headers(str(delivery.event_id), body)
        headers.pop("authorization", None)
        lines = [f"POST {delivery.target}", *(f"{k}: {v}" for k, v in headers.items()), ""]
        pretty = json.dumps(delivery.payload, indent=2, ensure_ascii=False)
        if len(pretty) > 20000:
            pretty = pretty[:20000] + "\n…"
        return format_html("<pre>{}</pre>", "\n".join(lines) + pretty)

    @admin.display(description="circuit")
    def breaker(self, delivery: WebhookDelivery) -> str:
        from workers.runtime.dispatcher import breaker_for

        return breaker_for(delivery.target).state()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        """The circuit of each backend with pending deliveries, once per page (not per row)."""
        from workers.runtime.dispatcher import pending_circuits

        circuits = pending_circuits()
        return super().changelist_view(request, {**(extra_context or {}), "circuits": circuits})

    @admin.action(
        description="Replay selected deliveries (same webhook-id)", permissions=["replay"]
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = webhooks.deliveries_replay(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} deliveries queued again.", messages.SUCCESS)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("gateway.change_webhookdelivery")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
