"""The shapes of groups in the API and in the group webhooks (one shape for both)."""

from __future__ import annotations

from rest_framework import serializers

from gateway.core.jids import RECIPIENT_PATTERN

ROLES = ["member", "admin", "superadmin"]
PARTICIPANT_STATUSES = [
    "ok",
    "invite_required",
    "refused",
    "not_found",
    "recently_left",
    "already_member",
    "failed",
]


class MemberSerializer(serializers.Serializer):
    jid = serializers.CharField(help_text="As WhatsApp names them: a @lid or a number's JID.")
    phone_number = serializers.CharField(help_text='E.164 when the session knows it, else "".')
    role = serializers.ChoiceField(ROLES)


class GroupSerializer(serializers.Serializer):
    jid = serializers.CharField()
    subject = serializers.CharField()
    description = serializers.CharField()
    owner = serializers.CharField(help_text="The creator's JID.")
    owner_phone = serializers.CharField()
    created_at = serializers.DateTimeField(allow_null=True)
    announce = serializers.BooleanField(help_text="Only admins send messages.")
    locked = serializers.BooleanField(help_text="Only admins edit the group's info.")
    member_count = serializers.IntegerField()


class GroupDetailSerializer(GroupSerializer):
    participants = MemberSerializer(many=True)


class GroupListSerializer(serializers.Serializer):
    groups = GroupSerializer(many=True)
    synced_at = serializers.DateTimeField(
        allow_null=True, help_text="When the list was last fetched whole from WhatsApp."
    )


class ParticipantResultSerializer(serializers.Serializer):
    jid = serializers.CharField()
    phone_number = serializers.CharField()
    status = serializers.ChoiceField(PARTICIPANT_STATUSES)
    error = serializers.IntegerField(help_text="WhatsApp's code when not ok, else 0.")
    invite_code = serializers.CharField(
        help_text="With invite_required: the code of an invite to send them instead."
    )
    invite_expires_at = serializers.DateTimeField(allow_null=True)


class GroupCreatedSerializer(serializers.Serializer):
    group = GroupDetailSerializer()
    participants = ParticipantResultSerializer(many=True)


def _participant_field() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.RegexField(RECIPIENT_PATTERN, max_length=100),
        max_length=256,
        help_text="E.164 numbers (+4915123456789) or users' JIDs (…@s.whatsapp.net, …@lid).",
    )


class GroupCreateInputSerializer(serializers.Serializer):
    subject = serializers.CharField(max_length=100, help_text="WhatsApp allows 100 characters.")
    participants = _participant_field()


class GroupUpdateInputSerializer(serializers.Serializer):
    subject = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(
        max_length=2048, required=False, allow_blank=True, help_text='"" removes it.'
    )
    announce = serializers.BooleanField(required=False)
    locked = serializers.BooleanField(required=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError(
                "Give at least one of subject, description, announce, locked."
            )
        return attrs


class ParticipantsInputSerializer(serializers.Serializer):
    action = serializers.ChoiceField(["add", "remove", "promote", "demote"])
    participants = _participant_field()

    def validate_participants(self, value: list[str]) -> list[str]:
        if not value:
            raise serializers.ValidationError("Name at least one participant.")
        return value


class ParticipantsResultSerializer(serializers.Serializer):
    participants = ParticipantResultSerializer(many=True)


class InviteLinkSerializer(serializers.Serializer):
    invite_link = serializers.CharField(help_text="https://chat.whatsapp.com/<code>")


class JoinInputSerializer(serializers.Serializer):
    invite_link = serializers.RegexField(
        r"^(https://chat\.whatsapp\.com/)?[A-Za-z0-9_-]{10,40}$",
        help_text="The group's invite link, or only its code.",
    )
