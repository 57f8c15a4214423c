from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from gateway.core import usage
from gateway.core.contract import TEXT_RULE, text_problem
from gateway.core.serializers import FieldsOnceModelSerializer
from sessions_app.models import Session
from sessions_app.states import Engine, SessionStatus

MAX_METADATA_BYTES = 16 * 1024


class SessionOutputSerializer(FieldsOnceModelSerializer):
    worker_id = serializers.UUIDField(allow_null=True, read_only=True)
    last_error = serializers.SerializerMethodField()

    class Meta:
        model = Session
        fields = [
            "id",
            "external_id",
            "name",
            "engine",
            "metadata",
            "desired_state",
            "status",
            "status_changed_at",
            "last_error",
            "phone_number",
            "jid",
            "push_name",
            "linked_at",
            "worker_id",
            "restart_requested_at",
            "logout_requested_at",
            "delete_requested_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_last_error(self, session: Session) -> dict[str, str] | None:
        if not (session.last_error or session.last_error_code):
            return None
        return {"code": session.last_error_code, "message": session.last_error}


class SessionCreateInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(
        max_length=200,
        required=False,
        allow_null=True,
        default=None,
        help_text="The backend's id for this session; creating twice with one id returns the "
        "first session.",
    )
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    engine = serializers.ChoiceField(choices=Engine.choices, required=False)
    start = serializers.BooleanField(default=True, help_text="Start linking right away.")
    metadata = serializers.DictField(required=False, default=dict)

    def validate_engine(self, engine: str) -> str:
        if engine == Engine.SANDBOX and not settings.SANDBOX_ENABLED:
            raise serializers.ValidationError("The sandbox engine is disabled (SANDBOX_ENABLED).")
        return engine

    def validate_metadata(self, metadata: dict) -> dict:
        if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            raise serializers.ValidationError(f"At most {MAX_METADATA_BYTES} bytes of JSON.")
        if text_problem(
            metadata
        ):  # the contract check refuses it first; PostgreSQL cannot store it
            raise serializers.ValidationError(TEXT_RULE)
        return metadata

    def validate(self, attrs: dict) -> dict:
        if "engine" not in attrs:
            try:
                attrs["engine"] = self.validate_engine(settings.DEFAULT_ENGINE)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"engine": exc.detail}) from None
        return attrs


class SessionFilterSerializer(serializers.Serializer):
    status = serializers.MultipleChoiceField(choices=SessionStatus.choices, required=False)
    worker = serializers.UUIDField(required=False)
    external_id = serializers.CharField(max_length=200, required=False)


class SessionMigrateInputSerializer(serializers.Serializer):
    worker = serializers.UUIDField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The worker to move to; by default the least loaded other active worker.",
    )


class PictureInputSerializer(serializers.Serializer):
    """A profile or group picture, uploaded."""

    file = serializers.FileField(help_text="A JPEG or PNG; made a square 640 px JPEG.")


class PictureSerializer(serializers.Serializer):
    picture_id = serializers.CharField(help_text="WhatsApp's id of the new picture.")


# --- usage ----------------------------------------------------------------------------------------

# The longest range one request may ask for, by granularity.
USAGE_MAX_RANGE = {"hour": timedelta(days=31), "day": timedelta(days=366)}


def _with_from(fields: Any) -> Any:
    """`from` is a Python keyword: the field is declared as `from_` and shown as `from`."""
    return {("from" if name == "from_" else name): field for name, field in fields.items()}


class UsageQuerySerializer(serializers.Serializer):
    from_ = serializers.DateTimeField(
        required=False,
        help_text="Start (ISO 8601), rounded down to its hour or day (UTC); default `to` less "
        "24 hours.",
    )
    to = serializers.DateTimeField(
        required=False,
        help_text="End (ISO 8601, excluded), rounded up to its hour or day (UTC); default now.",
    )
    granularity = serializers.ChoiceField(
        choices=usage.GRANULARITIES, default="day", help_text="Periods of an hour or a day (UTC)."
    )
    session = serializers.UUIDField(required=False, help_text="Only this session.")

    def get_fields(self) -> Any:
        return _with_from(super().get_fields())

    def validate(self, attrs: dict) -> dict:
        granularity = attrs["granularity"]
        try:
            end = attrs.get("to") or timezone.now()
            start = attrs.get("from") or end - timedelta(days=1)
            if start >= end:
                raise serializers.ValidationError({"to": ["Must be after `from`."]})
            attrs["from"] = usage.period_floor(start, granularity)
            attrs["to"] = usage.period_ceil(end, granularity)
        except OverflowError:
            raise serializers.ValidationError(
                "The range reaches beyond the dates this API can count."
            ) from None
        if attrs["to"] - attrs["from"] > USAGE_MAX_RANGE[granularity]:
            raise serializers.ValidationError(
                {
                    "to": [
                        f"At most {USAGE_MAX_RANGE[granularity].days} days of {granularity}s "
                        "in one request."
                    ]
                }
            )
        return attrs


class UsageCountsSerializer(serializers.Serializer):
    sent = serializers.IntegerField(help_text="Taken by WhatsApp (sent through the gateway).")
    delivered = serializers.IntegerField(help_text="Reached the recipient's phone.")
    read = serializers.IntegerField(help_text="Read (or played) by the recipient.")
    failed = serializers.IntegerField(help_text="Ended `failed`.")
    received = serializers.IntegerField(help_text="Inbound messages.")


class UsageMessagesSerializer(UsageCountsSerializer):
    by_type = serializers.DictField(
        child=UsageCountsSerializer(),
        help_text="The same figures per message type (`text`, `image`, …); only types that "
        "had any.",
    )


class UsageDirectionsSerializer(serializers.Serializer):
    sent = serializers.IntegerField()
    received = serializers.IntegerField()


class UsageWebhooksSerializer(serializers.Serializer):
    delivered = serializers.IntegerField(help_text="Webhook deliveries the backend accepted.")
    failed = serializers.IntegerField(help_text="Webhook deliveries given up (`dead`).")


class UsagePeriodSerializer(serializers.Serializer):
    session = serializers.UUIDField()
    period = serializers.DateTimeField(help_text="The period's start (UTC).")
    messages = UsageMessagesSerializer()
    media_bytes = UsageDirectionsSerializer(
        help_text="Bytes of media sent (when WhatsApp took the message) and received (stored)."
    )
    webhooks = UsageWebhooksSerializer()


class UsageSerializer(serializers.Serializer):
    from_ = serializers.DateTimeField(help_text="The first period's start.")
    to = serializers.DateTimeField(help_text="The last period's end.")
    granularity = serializers.ChoiceField(choices=usage.GRANULARITIES)
    results = UsagePeriodSerializer(
        many=True, help_text="Per period, then session; periods without activity are left out."
    )

    def get_fields(self) -> Any:
        return _with_from(super().get_fields())
