"""The webhook outbox in the admin: each delivery, its signed request, replays, circuits."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from gateway.core.admin import LiveMedia
from gateway.core.errors import ApiError
from gateway.outbox import brokers, deliveries, endpoints
from gateway.outbox.breaker import breaker_for, pending_circuits
from gateway.outbox.models import Endpoint, WebhookDelivery


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
    list_filter = ["status", "event_type", "endpoint", "target", "last_status_code"]
    list_select_related = ["session", "endpoint"]
    search_fields = ["event_id", "session__id", "session__external_id", "target"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "event_id",
        "event_type",
        "endpoint",
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
    fields = tuple(readonly_fields)
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
        body = deliveries.body_of(delivery)
        endpoint = delivery.endpoint
        if endpoint is None:
            headers = deliveries.signed_headers(str(delivery.event_id), body)
        else:  # the endpoint's own headers may carry credentials: names only
            secrets = deliveries.Destination.of(endpoint, timezone.now()).secrets
            extra = tuple((name, "…") for name in endpoint.headers or {})
            headers = deliveries.signed_headers(
                str(delivery.event_id), body, secrets=secrets, extra=extra
            )
        headers.pop("authorization", None)
        lines = [f"POST {delivery.target}", *(f"{k}: {v}" for k, v in headers.items()), ""]
        pretty = json.dumps(delivery.payload, indent=2, ensure_ascii=False)
        if len(pretty) > 20000:
            pretty = pretty[:20000] + "\n…"
        return format_html("<pre>{}</pre>", "\n".join(lines) + pretty)

    @admin.display(description="circuit")
    def breaker(self, delivery: WebhookDelivery) -> str:

        return breaker_for(delivery.target, delivery.endpoint_id).state()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        """The circuit of each backend with pending deliveries, once per page (not per row)."""

        circuits = pending_circuits()
        return super().changelist_view(request, {**(extra_context or {}), "circuits": circuits})

    @admin.action(
        description="Replay selected deliveries (same webhook-id)", permissions=["replay"]
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = deliveries.deliveries_replay(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} deliveries queued again.", messages.SUCCESS)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("gateway.change_webhookdelivery")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class EndpointForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        help_text="Leave empty to keep the current one (a new endpoint: to generate one). A new "
        "one is shown once, after saving; the previous one keeps signing too for a day.",
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = Endpoint
        fields = [
            "url",
            "events",
            "sessions",
            "secret",
            "headers",
            "subject",
            "stream",
            "exchange",
            "enabled",
            "description",
        ]

    def clean_url(self) -> str:
        try:
            return endpoints.check_url(self.cleaned_data["url"].strip())
        except ApiError as refused:
            raise forms.ValidationError(refused.message) from None

    def clean_events(self) -> list[str]:
        try:
            return endpoints.check_patterns(self.cleaned_data["events"] or [])
        except ApiError as refused:
            raise forms.ValidationError(refused.message) from None

    def clean_sessions(self) -> list[str] | None:
        try:
            return endpoints.check_session_ids(self.cleaned_data.get("sessions"))
        except ApiError as refused:
            raise forms.ValidationError(refused.message) from None

    def clean_secret(self) -> str:
        value = self.cleaned_data.get("secret") or ""
        if not value:
            return self.instance.secret if self.instance.pk else endpoints.new_secret()
        try:
            return endpoints.check_secret(value)
        except ApiError as refused:
            raise forms.ValidationError(refused.message) from None

    def clean_headers(self) -> dict[str, str]:
        value = self.cleaned_data.get("headers")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Headers are a JSON object: {"X-Name": "value"}.')
        try:
            return endpoints.check_headers(value)
        except ApiError as refused:
            raise forms.ValidationError(refused.message) from None

    def clean(self) -> dict[str, Any]:
        """A broker's subject, stream and exchange, as the API checks them (and its defaults)."""
        data = super().clean() or {}
        if "url" not in data:  # refused already
            return data
        try:
            data.update(
                endpoints.broker_fields(
                    data["url"],
                    subject=data.get("subject") or "",
                    stream=data.get("stream") or "",
                    exchange=data.get("exchange") or "",
                )
            )
        except ApiError as refused:
            field = {
                "subject_invalid": "subject",
                "stream_invalid": "stream",
                "exchange_invalid": "exchange",
            }.get(refused.code)
            self.add_error(field, refused.message)
        return data


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    """Webhook and broker endpoints (also made through `/api/v1/webhooks`)."""

    form = EndpointForm
    list_display = ["__str__", "shown_url", "events", "enabled", "disabled_reason", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "description"]
    readonly_fields = ["disabled_reason", "created_at", "updated_at"]

    @admin.display(description="URL")
    def shown_url(self, endpoint: Endpoint) -> str:
        return brokers.redact(endpoint.url)

    def save_model(self, request: HttpRequest, obj: Endpoint, form, change: bool) -> None:
        shown = not change or bool(form.data.get("secret"))  # made, or given anew
        rows = Endpoint.objects.filter(pk=obj.pk)
        stored = rows.values_list("secret", flat=True).first() if change else None
        if stored is None or obj.secret == stored:
            super().save_model(request, obj, form, change)
        else:  # a new secret: rotated as the API rotates, the old one signing for the overlap
            new = obj.secret
            obj.secret = stored
            super().save_model(request, obj, form, change)  # (the admin's transaction holds both)
            rotated = endpoints.endpoint_rotate_secret(obj, secret=new)
            obj.secret, obj.previous_secret = rotated.secret, rotated.previous_secret
            obj.previous_secret_until = rotated.previous_secret_until
        if shown:
            self.message_user(
                request, f"The endpoint's signing secret (shown once): {obj.secret}", messages.INFO
            )
        if stored is not None and obj.secret != stored and obj.previous_secret_until:
            self.message_user(
                request,
                "The previous secret signs too (a second signature) until "
                f"{obj.previous_secret_until:%Y-%m-%d %H:%M %Z}, so receivers can switch.",
                messages.INFO,
            )
