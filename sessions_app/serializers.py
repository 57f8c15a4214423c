from __future__ import annotations

import json

from django.conf import settings
from rest_framework import serializers

from gateway.core.contract import TEXT_RULE, text_problem
from sessions_app.models import Session
from sessions_app.states import Engine, SessionStatus

MAX_METADATA_BYTES = 16 * 1024


class SessionOutputSerializer(serializers.ModelSerializer):
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
