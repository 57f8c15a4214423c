from __future__ import annotations

import hashlib
import json
from typing import Any, TypedDict

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gateway.core.jids import RECIPIENT_PATTERN, jid_to_phone, recipient_jid
from gateway.core.serializers import FieldsOnceModelSerializer
from messaging import events
from messaging.models import Message
from messaging.services import Upload, media
from messaging.services.media import MEDIA_TYPES
from messaging.states import Direction, MessageStatus, MessageType
from sessions_app.services import E164

CAPTIONED = ("image", "video", "document")


def _jid(value: str) -> str:
    try:
        return recipient_jid(value)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc)) from None


class LocationSerializer(serializers.Serializer):
    latitude = serializers.FloatField(min_value=-90, max_value=90)
    longitude = serializers.FloatField(min_value=-180, max_value=180)
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    address = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class ContactSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    phone_number = serializers.RegexField(E164, required=False, default="", help_text="E.164")
    vcard = serializers.CharField(max_length=10000, required=False, default="", allow_blank=True)


class PollSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=255)
    options = serializers.ListField(
        child=serializers.CharField(max_length=100), min_length=2, max_length=12
    )
    multiple = serializers.BooleanField(
        default=False, help_text="Voters may choose several options."
    )

    def validate_options(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("The options must differ.")
        return value


class MediaUrlSerializer(serializers.Serializer):
    url = serializers.RegexField(
        # RFC 3986 in ASCII (non-ASCII percent-encoded): [userinfo@]host[:port], then path, query,
        # fragment; brackets only around an IPv6 address.
        r"^https?://([A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"
        r"([A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]*)?([/?#][!-~]*)?$",
        max_length=2000,
        help_text="Fetched by the gateway: http or https, ASCII (percent-encode the rest), a "
        "public address (422 `url_forbidden` otherwise), within MEDIA_FETCH_TIMEOUT_SECONDS.",
    )


class SendArguments(TypedDict):
    """`messaging.services.message_send`'s keyword arguments that a request's body gives."""

    to: str
    type: str
    text: str
    caption: str
    reply_to: str
    payload: dict[str, Any]
    upload: Upload | None
    media_url: str
    filename: str
    fingerprint: str


def _fingerprint(data: dict[str, Any], file_digest: str) -> str:
    """What identifies a request for Idempotency-Key: its validated fields and the file's hash."""
    # Fields left at their empty default do not count (keys sent before they existed still match).
    canonical = {
        k: v
        for k, v in data.items()
        if k != "file" and not (k in ("mentions", "link_preview") and not v)
    }
    canonical["file_sha256"] = file_digest
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


class MessageFieldsSerializer(serializers.Serializer):
    """What a message is, however it is sent: JSON (`MessageCreateInputSerializer`) or
    multipart with its file (`MessageUploadInputSerializer`). `send_arguments()` is the valid
    message as what `message_send` takes."""

    to = serializers.RegexField(
        RECIPIENT_PATTERN,
        max_length=100,
        help_text="E.164 number (+4915123456789) or a JID (…@g.us, …@lid). A number must be "
        "possible for its country code (422 otherwise).",
    )
    type = serializers.ChoiceField(choices=MessageType.choices, default=MessageType.TEXT)
    text = serializers.CharField(max_length=4096, required=False, default="", allow_blank=True)
    caption = serializers.CharField(max_length=1024, required=False, default="", allow_blank=True)
    filename = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)
    reply_to = serializers.CharField(
        max_length=100,
        required=False,
        default="",
        allow_blank=True,
        help_text="WhatsApp id of the message replied (or, for `reaction`, reacted) to.",
    )
    reaction = serializers.CharField(
        max_length=16,
        required=False,
        default="",
        allow_blank=True,
        help_text="An emoji; '' removes.",
    )
    link_preview = serializers.BooleanField(
        default=False,
        help_text="Show the first link's title, description and thumbnail under a text "
        "(fetched when the message is sent, through the same guard as `media.url`).",
    )
    mentions = serializers.ListField(
        child=serializers.RegexField(RECIPIENT_PATTERN, max_length=100),
        required=False,
        default=list,
        max_length=1024,
        help_text="Users mentioned in the text or caption (E.164 or their JIDs); write them as "
        "`@<number>` in it, as WhatsApp shows them.",
    )

    def validate_to(self, value: str) -> str:
        return _jid(value)

    def validate_mentions(self, value: list[str]) -> list[str]:
        jids = [_jid(item) for item in value]
        if any(jid.endswith("@g.us") for jid in jids):
            raise serializers.ValidationError("Only users can be mentioned.")
        return list(dict.fromkeys(jids))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs["type"]
        errors: dict[str, str] = {}
        has_media = "file" in attrs or "media" in attrs
        if kind in MEDIA_TYPES:
            if ("file" in attrs) == ("media" in attrs):
                errors["file"] = f"A {kind} needs exactly one of `file` or `media.url`."
        elif has_media:
            errors["file"] = f"A {kind} message has no media."
        if attrs["caption"] and kind not in CAPTIONED:
            errors["caption"] = f"A {kind} has no caption."
        if kind == "text" and not attrs["text"].strip():
            errors["text"] = "A text message needs `text`."
        if kind != "text" and attrs["text"]:
            errors["text"] = f"A {kind} has no `text`; use `caption`."
        if kind == "location" and "location" not in attrs:
            errors["location"] = "A location needs `location`."
        if kind == "contact" and "contact" not in attrs:
            errors["contact"] = "A contact needs `contact`."
        if attrs["link_preview"] and kind != "text":
            errors["link_preview"] = "Only a text has a link preview."
        if attrs["mentions"] and kind not in ("text", *CAPTIONED):
            errors["mentions"] = f"A {kind} has no text to mention anyone in."
        if (kind == "poll") != ("poll" in attrs):
            errors["poll"] = "A poll needs `poll`." if kind == "poll" else f"A {kind} has no poll."
        if kind == "reaction" and not attrs["reply_to"]:
            errors["reply_to"] = "A reaction needs `reply_to`: the message reacted to."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def send_arguments(self) -> SendArguments:
        """The valid message as `message_send` takes it (all but the session and the
        Idempotency-Key): its type's payload, the uploaded file (its size checked before it is
        read) and the fingerprint that identifies the request."""
        v = self.validated_data
        upload = None
        if v.get("file") is not None:
            media.check_size(v["type"], v["file"].size)  # before reading it
            upload = Upload(v["file"].read(), v["file"].content_type, v["file"].name)
        digest = hashlib.sha256(upload.content).hexdigest() if upload else ""
        return {
            "to": v["to"],
            "type": v["type"],
            "text": v["text"],
            "caption": v["caption"],
            "reply_to": v["reply_to"],
            "payload": {k: v[k] for k in ("location", "contact", "poll") if k in v}
            | ({"reaction": v["reaction"]} if v["type"] == "reaction" else {})
            | ({"mentions": v["mentions"]} if v["mentions"] else {})
            | ({"link_preview": True} if v["link_preview"] else {}),
            "upload": upload,
            "media_url": v.get("media", {}).get("url", ""),
            "filename": v["filename"],
            "fingerprint": _fingerprint(v, digest),
        }


class MessageCreateInputSerializer(MessageFieldsSerializer):
    """A message as JSON; media by `media.url`."""

    media = MediaUrlSerializer(required=False, help_text="The media, fetched from this URL.")
    location = LocationSerializer(required=False)
    poll = PollSerializer(required=False, help_text="A poll: 2 to 12 different options.")
    contact = ContactSerializer(required=False)


class MessageUploadInputSerializer(MessageFieldsSerializer):
    """A message as a multipart form, with its media as `file`."""

    file = serializers.FileField(help_text="The media itself.")


class MessageFilterSerializer(serializers.Serializer):
    direction = serializers.ChoiceField(choices=Direction.choices, required=False)
    status = serializers.ChoiceField(choices=MessageStatus.choices, required=False)
    chat = serializers.RegexField(
        RECIPIENT_PATTERN, max_length=100, required=False, help_text="E.164 number or JID."
    )
    since = serializers.DateTimeField(required=False, help_text="Created at or after (ISO 8601).")

    def validate_chat(self, value: str) -> str:
        return _jid(value)


class EditSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="What it said before this edit.")
    at = serializers.DateTimeField()
    by = serializers.CharField(help_text="Who edited it (their JID).")


class ByUserSerializer(serializers.Serializer):
    jid = serializers.CharField()
    phone_number = serializers.CharField(help_text='E.164 when known, else "".')


class ReactionSerializer(serializers.Serializer):
    by = ByUserSerializer()
    emoji = serializers.CharField()
    at = serializers.DateTimeField()


class PollOptionTallySerializer(serializers.Serializer):
    option = serializers.CharField()
    count = serializers.IntegerField()
    voters = ByUserSerializer(many=True)


class PollTallySerializer(serializers.Serializer):
    question = serializers.CharField()
    options = serializers.ListField(child=serializers.CharField())
    multiple = serializers.BooleanField()
    tally = PollOptionTallySerializer(many=True, help_text="Each voter's latest vote counts.")
    undecryptable_votes = serializers.IntegerField(
        help_text="Votes that came but could not be decrypted (recorded, never dropped)."
    )


class MessageEditInputSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=4096, help_text="The new text.")


class MessageOutputSerializer(FieldsOnceModelSerializer):
    session = serializers.UUIDField(source="session_id")
    error = serializers.SerializerMethodField()
    media = serializers.SerializerMethodField()
    location = serializers.JSONField(source="payload.location", default=None)
    contact = serializers.JSONField(source="payload.contact", default=None)
    reaction = serializers.CharField(source="payload.reaction", default=None)
    mentions = serializers.ListField(
        child=serializers.CharField(), source="payload.mentions", default=list
    )
    edits = EditSerializer(many=True, source="payload.edits", default=list)
    reactions = serializers.SerializerMethodField()
    poll = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "session",
            "direction",
            "chat",
            "sender",
            "sender_phone",
            "type",
            "text",
            "caption",
            "location",
            "contact",
            "reaction",
            "mentions",
            "reply_to",
            "media",
            "wa_message_id",
            "idempotency_key",
            "status",
            "error",
            "attempts",
            "created_at",
            "sending_at",
            "sent_at",
            "delivered_at",
            "read_at",
            "played_at",
            "failed_at",
            "received_at",
            "revoked_at",
            "edits",
            "reactions",
            "poll",
        ]

    @extend_schema_field(ReactionSerializer(many=True))
    def get_reactions(self, message: Message) -> list[dict[str, Any]]:
        """Who reacted with what (one reaction each, as on WhatsApp)."""
        reactions = message.payload.get("reactions", {})
        return [
            {
                "by": {"jid": jid, "phone_number": r.get("phone_number", "")},
                "emoji": r["emoji"],
                "at": r["at"],
            }
            for jid, r in reactions.items()
        ]

    @extend_schema_field(PollTallySerializer(allow_null=True))
    def get_poll(self, message: Message) -> dict[str, Any] | None:
        """A poll's question and options, with the voters of each (their latest votes)."""
        poll = message.payload.get("poll")
        if poll is None:
            return None
        votes = message.payload.get("votes", {})
        tally = [
            {
                "option": option,
                "count": len(
                    voters := [v for v, vote in votes.items() if option in vote["options"]]
                ),
                "voters": [
                    {"jid": v, "phone_number": votes[v].get("phone_number", "")} for v in voters
                ],
            }
            for option in poll["options"]
        ]
        return {
            "question": poll["question"],
            "options": poll["options"],
            "multiple": poll.get("multiple", False),
            "tally": tally,
            "undecryptable_votes": len(message.payload.get("undecryptable_votes", [])),
        }

    def get_error(self, message: Message) -> dict[str, str] | None:
        return events.message_error(message)

    def get_media(self, message: Message) -> dict[str, Any] | None:
        return events.message_media(message, with_url=self.context.get("media_urls", False))


class CheckNumbersInputSerializer(serializers.Serializer):
    phone_numbers = serializers.ListField(
        child=serializers.RegexField(E164), min_length=1, max_length=50
    )


class NumberCheckSerializer(serializers.Serializer):
    phone_number = serializers.CharField()
    on_whatsapp = serializers.BooleanField()
    jid = serializers.CharField()


class LastMessageSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    direction = serializers.CharField()
    status = serializers.CharField()
    text = serializers.CharField(help_text="Its text, or its caption.")
    sender = serializers.CharField()


class ChatSerializer(serializers.Serializer):
    jid = serializers.CharField(source="chat", help_text="The chat's JID.")
    phone_number = serializers.SerializerMethodField(
        help_text='E.164 for a number\'s chat, else "".'
    )
    subject = serializers.CharField(
        allow_null=True, help_text="A group's subject (from the cache)."
    )
    last_activity = serializers.DateTimeField()
    unread = serializers.IntegerField(help_text="Inbound messages not marked read yet.")
    last_message = serializers.SerializerMethodField()

    def get_phone_number(self, row: dict[str, Any]) -> str:
        return jid_to_phone(row["chat"])

    @extend_schema_field(LastMessageSerializer(allow_null=True))
    def get_last_message(self, row: dict[str, Any]) -> dict[str, Any] | None:
        message = row["last_message"]
        if message is None:
            return None
        return {
            "id": message.pk,
            "type": message.type,
            "direction": message.direction,
            "status": message.status,
            "text": message.text or message.caption,
            "sender": message.sender,
        }


class ChatReadSerializer(serializers.Serializer):
    chat = serializers.CharField()
    marked = serializers.IntegerField(help_text="Inbound messages marked read now.")
