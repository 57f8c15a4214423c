from __future__ import annotations

from rest_framework import serializers

from gateway.core.serializers import FieldsOnceModelSerializer
from workers.models import Worker
from workers.states import WorkerStatus


class WorkerOutputSerializer(FieldsOnceModelSerializer):
    session_count = serializers.IntegerField(read_only=True, help_text="Sessions it holds now.")

    class Meta:
        model = Worker
        fields = [
            "id",
            "name",
            "hostname",
            "pid",
            "version",
            "engines",
            "capacity",
            "status",
            "session_count",
            "stats",
            "started_at",
            "last_heartbeat_at",
            "stopped_at",
            "created_at",
        ]
        read_only_fields = fields


class WorkerFilterSerializer(serializers.Serializer):
    status = serializers.MultipleChoiceField(choices=WorkerStatus.choices, required=False)
