"""The webhook endpoints' API bodies (`/api/v1/webhooks`)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from gateway.outbox import brokers, endpoints
from gateway.outbox.models import DeliveryStatus, Endpoint, WebhookDelivery


class EndpointInputSerializer(serializers.Serializer):
    url = serializers.CharField(
        max_length=500,
        help_text="https://… for a webhook (http:// too), nats://… for NATS JetStream, "
        "amqp://user:password@host/vhost (or amqps://) for RabbitMQ.",
    )
    events = serializers.ListField(
        child=serializers.CharField(max_length=60),
        default=endpoints.default_events,
        max_length=50,
        help_text="Event patterns: `*` (every event), `message.*`, `session.status`, …",
    )
    sessions = serializers.ListField(
        child=serializers.UUIDField(),
        allow_null=True,
        allow_empty=False,
        default=None,
        min_length=1,
        max_length=1000,
        error_messages={"empty": endpoints.NO_SESSIONS, "min_length": endpoints.NO_SESSIONS},
        help_text="Only these sessions' events (at least one); null or omitted: every session. "
        "An empty list is refused.",
    )
    secret = serializers.CharField(
        max_length=200,
        required=False,
        help_text="A Standard Webhooks secret (`whsec_` and base64 of 24 to 64 bytes); "
        "generated when omitted. Answered once, here.",
    )
    headers = serializers.DictField(
        child=serializers.CharField(max_length=1000, allow_blank=True),
        default=dict,
        help_text="Extra headers on every request (e.g. a token your receiver checks).",
    )
    enabled = serializers.BooleanField(default=True)
    description = serializers.CharField(max_length=300, allow_blank=True, default="")
    subject = serializers.CharField(
        max_length=200,
        default="wa.{session}.{event}",
        help_text="Brokers: the NATS subject or RabbitMQ routing key, from `{session}`, "
        "`{external_id}` and `{event}`.",
    )
    stream = serializers.CharField(
        max_length=100, required=False, help_text="NATS: the JetStream stream (created if missing)."
    )
    exchange = serializers.CharField(
        max_length=100, required=False, help_text="RabbitMQ: the topic exchange (default whatsapp)."
    )

    def validate_url(self, value: str) -> str:
        return endpoints.check_url(value.strip())

    def validate_events(self, value: list[str]) -> list[str]:
        return endpoints.check_patterns(value)

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        return endpoints.check_headers(value)

    def validate_sessions(self, value: list[Any] | None) -> list[str] | None:
        return endpoints.check_session_ids(value)

    def validate_secret(self, value: str) -> str:
        return endpoints.check_secret(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        def current(name: str) -> str:
            return attrs.get(name) or getattr(self.instance, name, "") or ""

        attrs.update(
            endpoints.broker_fields(
                current("url"),
                subject=current("subject"),
                stream=current("stream"),
                exchange=current("exchange"),
            )
        )
        return attrs


class EndpointOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Broker passwords are not shown.")
    kind = serializers.SerializerMethodField(help_text="webhook, nats or amqp.")
    headers = serializers.SerializerMethodField(help_text="Header names (values not shown).")
    previous_secret_until = serializers.SerializerMethodField(
        help_text="During a rotation: until when the previous secret signs too."
    )

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "url",
            "kind",
            "events",
            "sessions",
            "headers",
            "enabled",
            "disabled_reason",
            "description",
            "subject",
            "stream",
            "exchange",
            "previous_secret_until",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_url(self, endpoint: Endpoint) -> str:
        return brokers.redact(endpoint.url)

    def get_kind(self, endpoint: Endpoint) -> str:
        return endpoints.kind_of(endpoint.url)

    def get_headers(self, endpoint: Endpoint) -> list[str]:
        return sorted(endpoint.headers or {})

    def get_previous_secret_until(self, endpoint: Endpoint) -> str | None:
        until = endpoint.previous_secret_until
        if not endpoint.previous_secret or until is None or until <= timezone.now():
            return None
        return until.isoformat()


class EndpointSecretSerializer(EndpointOutputSerializer):
    """The answer that shows the secret (creation, rotation): the only time it is shown."""

    class Meta(EndpointOutputSerializer.Meta):
        fields = [*EndpointOutputSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class RotateInputSerializer(serializers.Serializer):
    secret = serializers.CharField(
        max_length=200, required=False, help_text="Generated if omitted."
    )
    overlap_seconds = serializers.IntegerField(
        min_value=0,
        max_value=7 * 86400,
        default=endpoints.DEFAULT_OVERLAP_SECONDS,
        help_text="How long the previous secret signs too (a second signature), so receivers "
        "can switch without refusing an event.",
    )

    def validate_secret(self, value: str) -> str:
        return endpoints.check_secret(value)


class DeliveryOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "session",
            "sequence",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class DeliveryFilterSerializer(serializers.Serializer):
    status = serializers.MultipleChoiceField(choices=DeliveryStatus.choices, required=False)
    event = serializers.CharField(max_length=60, required=False, help_text="An event type.")
    session = serializers.UUIDField(required=False)


class ReplayInputSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        max_length=1000,
        help_text="These deliveries; or, when omitted, every delivery with `status`.",
    )
    status = serializers.ChoiceField(
        choices=[DeliveryStatus.DEAD, DeliveryStatus.SUPERSEDED], default=DeliveryStatus.DEAD
    )


class ReplayOutputSerializer(serializers.Serializer):
    replayed = serializers.IntegerField()


class TestOutputSerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    event = serializers.CharField()
