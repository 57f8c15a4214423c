"""Sandbox controls: drive the simulated phone of a sandbox session from the API or the shell.

A control is published on the channel layer to the group `sandbox.<session id>`; the worker that
runs the session (in this process or any other) has joined that group and applies it to its engine.
Like any push it is fire-and-forget: the effects arrive as the session's events.
"""

from __future__ import annotations

import base64
import binascii

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.core.api import ApiView
from gateway.core.errors import Conflict, NotFound
from gateway.core.limits import SANDBOX_MEDIA_BYTES
from gateway.core.openapi import errors
from sessions_app.models import Session
from sessions_app.selectors import session_get
from sessions_app.services import E164, calls
from sessions_app.states import Engine

ACTIONS = (
    "scan",
    "receive",
    "disconnect",
    "logout",
    "replace",
    "freeze",
    "ban",
    "outdate",
    "receipts",
    "presence",
    "block",
    "group_event",
    "history",
)
MAX_MEDIA_BYTES = SANDBOX_MEDIA_BYTES


# How the simulated phones send receipts: the sandbox engine's own list (a test holds them equal).
RECEIPT_MODES = ("normal", "missing", "duplicated", "out_of_order", "after_reconnect")
# What a simulated contact can do (the sandbox engine's PRESENCE_STATES, held equal by a test).
PRESENCE_STATES = ("available", "unavailable", "typing", "recording", "paused")
SANDBOX_MESSAGE_TYPES = ["text", "image", "video", "audio", "voice", "document", "sticker", "poll"]
# What a contact does to a message (`reply_to`: its WhatsApp id), sent through `receive` too.
SANDBOX_ACTIONS_ON_MESSAGES = ["reaction", "edit", "revoke", "poll_vote"]
SANDBOX_RECEIVE_TYPES = SANDBOX_MESSAGE_TYPES + SANDBOX_ACTIONS_ON_MESSAGES


class SandboxDisabled(NotFound):
    code = "sandbox_disabled"
    message = "The sandbox is disabled (SANDBOX_ENABLED)."


def sandbox_control_send(*, session: Session, action: str, **arguments: object) -> None:
    """Publish one control for `session`. Raises Conflict for a session of another engine and
    ServiceUnavailable when the channel layer cannot be reached."""
    if not settings.SANDBOX_ENABLED:
        raise SandboxDisabled()
    if session.engine != Engine.SANDBOX:
        raise Conflict(
            "Only sandbox sessions have a simulated phone.", code="not_a_sandbox_session"
        )
    message = {
        "type": "sandbox.control",
        "session_id": str(session.id),
        "action": action,
        "arguments": arguments,
    }
    calls.publish(session.id, message)


class SandboxScanInputSerializer(serializers.Serializer):
    phone_number = serializers.RegexField(
        E164, help_text="E.164, e.g. +15550001.", required=False, default=""
    )


class SandboxMediaInputSerializer(serializers.Serializer):
    # The API's field name; it shadows Serializer.data, which this serializer never reads.
    data = serializers.CharField(help_text="The file, base64.")  # type: ignore[assignment]
    mime_type = serializers.CharField(max_length=100)
    filename = serializers.CharField(max_length=200, required=False, default="")

    def validate_data(self, value: str) -> str:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("Not valid base64.") from None
        if len(decoded) > MAX_MEDIA_BYTES:
            raise serializers.ValidationError(f"At most {MAX_MEDIA_BYTES} bytes.")
        return value


class SandboxReceiveInputSerializer(serializers.Serializer):
    # `from` is a Python keyword, so the field is declared through the class namespace.
    locals()["from"] = serializers.RegexField(
        E164, source="sender_phone", help_text="Who sends it (E.164)."
    )
    type = serializers.ChoiceField(
        SANDBOX_RECEIVE_TYPES,
        default="text",
        help_text="A message, or what the contact does to one (`reply_to`): `reaction` "
        "(`reaction`, '' to remove it), `edit` (its new `text`), `revoke` (deleted for everyone), "
        "`poll_vote` (the `options` chosen in the poll `reply_to`).",
    )
    text = serializers.CharField(
        max_length=4096, required=False, default="", help_text="The text, or the caption of media."
    )
    reply_to = serializers.CharField(
        max_length=100, required=False, default="", help_text="The WhatsApp id acted on."
    )
    reaction = serializers.CharField(max_length=16, required=False, default="", allow_blank=True)
    mentions = serializers.ListField(
        child=serializers.RegexField(E164),
        required=False,
        default=list,
        max_length=64,
        help_text="Whom the text or caption mentions (E.164).",
    )
    options = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=list,
        max_length=12,
        help_text="With poll_vote: the options chosen (none withdraws the vote); with poll: "
        "the poll's options (its question is `text`).",
    )
    multiple = serializers.BooleanField(default=False, help_text="With poll: several choices.")
    media = SandboxMediaInputSerializer(required=False)
    as_lid = serializers.BooleanField(
        default=False, help_text="Hide the sender's number behind a @lid JID."
    )
    resolvable = serializers.BooleanField(
        default=True, help_text="With `as_lid`: False when the number behind it is not known."
    )
    from_me = serializers.BooleanField(
        default=False, help_text="The phone itself sent it, to `from` (seen by linked devices)."
    )

    def validate(self, attrs: dict) -> dict:
        if attrs["type"] in SANDBOX_ACTIONS_ON_MESSAGES:
            if not attrs["reply_to"]:
                raise serializers.ValidationError({"reply_to": ["Name the message acted on."]})
            if attrs["type"] == "edit" and not attrs["text"]:
                raise serializers.ValidationError({"text": ["An edit needs the new text."]})
            return attrs
        if attrs["type"] == "poll":
            if not attrs["text"] or len(attrs["options"]) < 2:
                raise serializers.ValidationError(
                    {"options": ["A poll needs its question (`text`) and 2 or more options."]}
                )
            return attrs
        if attrs["type"] == "text" and not attrs["text"]:
            raise serializers.ValidationError({"text": ["A text message needs text."]})
        if attrs["type"] != "text" and "media" not in attrs:
            raise serializers.ValidationError(
                {"media": [f"A {attrs['type']} message needs media."]}
            )
        return attrs


class SandboxBanInputSerializer(serializers.Serializer):
    expire_seconds = serializers.IntegerField(min_value=1, max_value=30 * 86400, default=3600)


class SandboxReceiptsInputSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(
        RECEIPT_MODES,
        help_text="missing: `delivered` only (read receipts off); duplicated: each twice; "
        "out_of_order: `read` before `delivered`; after_reconnect: held until the next "
        "connection.",
    )


class SandboxPresenceInputSerializer(serializers.Serializer):
    locals()["from"] = serializers.RegexField(
        E164, source="sender_phone", help_text="The contact (E.164)."
    )
    state = serializers.ChoiceField(
        PRESENCE_STATES,
        help_text="available/unavailable: online or offline (reaches the session only when it "
        "subscribed to the contact); typing, recording, paused: in their chat with the session, "
        "or in `group`. Nothing reaches a session that does not show itself online.",
    )
    group = serializers.RegexField(
        r"^[0-9]+(-[0-9]+)?@g\.us$", required=False, default="", help_text="A group's JID."
    )
    last_seen = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**32,
        help_text="With unavailable: last seen, a Unix time.",
    )


class SandboxBlockInputSerializer(serializers.Serializer):
    phone_number = serializers.RegexField(E164, help_text="The contact (E.164).")
    # `change` for the engine: `action` names the control itself.
    action = serializers.ChoiceField(["block", "unblock"], source="change")


# What a group's other members can do (the sandbox engine's GROUP_EVENTS; a test holds them equal).
GROUP_EVENTS = (
    "join",
    "leave",
    "add",
    "remove",
    "promote",
    "demote",
    "subject",
    "description",
    "announce",
    "locked",
)


class SandboxGroupEventInputSerializer(serializers.Serializer):
    group = serializers.RegexField(r"^[0-9]+(-[0-9]+)?@g\.us$", help_text="The group's JID.")
    # `event` for the engine: `action` names the control itself.
    action = serializers.ChoiceField(
        GROUP_EVENTS,
        source="event",
        help_text="join: `by` adds the session's number to `group` (created, with subject "
        "`value`, when it does not exist); leave: `participant` leaves; add, remove, promote, "
        "demote: `by` does it to `participant` (who may be the session's own number); subject, "
        "description: `by` sets it to `value`; announce, locked: `by` sets it to `value` "
        "(true/false).",
    )
    participant = serializers.RegexField(E164, required=False, default="")
    by = serializers.RegexField(E164, required=False, default="")
    value = serializers.CharField(max_length=2048, required=False, default="", allow_blank=True)

    def validate(self, attrs: dict) -> dict:
        needs = {"leave": "participant", "join": "by"}
        needs |= dict.fromkeys(("add", "remove", "promote", "demote"), "participant")
        field = needs.get(attrs["event"])
        if field and not attrs[field]:
            raise serializers.ValidationError({field: f"{attrs['event']} needs `{field}`."})
        if attrs["event"] in ("announce", "locked") and attrs["value"] not in ("true", "false"):
            raise serializers.ValidationError({"value": "true or false."})
        return attrs


class SandboxHistoryInputSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=1, max_value=100_000, help_text="Messages.")
    chats = serializers.IntegerField(min_value=1, max_value=1000, default=10)
    days = serializers.FloatField(min_value=0.01, max_value=3650, default=10.0)


SERIALIZERS = {
    "scan": SandboxScanInputSerializer,
    "receive": SandboxReceiveInputSerializer,
    "ban": SandboxBanInputSerializer,
    "receipts": SandboxReceiptsInputSerializer,
    "presence": SandboxPresenceInputSerializer,
    "block": SandboxBlockInputSerializer,
    "group_event": SandboxGroupEventInputSerializer,
    "history": SandboxHistoryInputSerializer,
}


def control_arguments(action: str, data: dict) -> dict:
    """Validated API input → the engine's keyword arguments (the fields' `source` names them)."""
    serializer_class = SERIALIZERS.get(action)
    if serializer_class is None:
        return {}
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    values = serializer.validated_data
    arguments = {name: value for name, value in values.items() if name != "media"}
    if "media" in values:
        arguments.update(
            media_base64=values["media"]["data"],
            mime_type=values["media"]["mime_type"],
            filename=values["media"]["filename"],
        )
    return arguments


class _SandboxControlApi(ApiView):
    action = ""
    required_scope = "control"

    def control(self, request: Request, session_id: object) -> Response:
        if not settings.SANDBOX_ENABLED:
            raise SandboxDisabled()
        session = session_get(session_id=session_id)
        arguments = control_arguments(self.action, request.data)
        sandbox_control_send(session=session, action=self.action, **arguments)
        return Response(
            {"session_id": str(session.id), "action": self.action, "sent": True},
            status=status.HTTP_202_ACCEPTED,
        )


def _schema(action: str, request: type | None, summary: str):
    return extend_schema(
        operation_id=f"sandbox_{action}",
        tags=["sandbox"],
        request=request,
        summary=summary,
        responses={202: SandboxSentSerializer, **errors(400, 404, 409, 413, 415, 422, 503)},
        description="Only when SANDBOX_ENABLED, and only for sessions of the `sandbox` engine. "
        "The control is published to the worker running the session; its effects arrive as the "
        "session's events.",
    )


class SandboxSentSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()
    action = serializers.ChoiceField(ACTIONS)
    sent = serializers.BooleanField()


class SandboxScanApi(_SandboxControlApi):
    action = "scan"

    @_schema("scan", SandboxScanInputSerializer, "Link as if the QR or pairing code were scanned")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxReceiveApi(_SandboxControlApi):
    action = "receive"

    @_schema("receive", SandboxReceiveInputSerializer, "Deliver an inbound message")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxDisconnectApi(_SandboxControlApi):
    action = "disconnect"

    @_schema("disconnect", None, "Drop the connection (it comes back by itself)")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxLogoutApi(_SandboxControlApi):
    action = "logout"

    @_schema("logout", None, "Unlink the device from the simulated phone")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxReplaceApi(_SandboxControlApi):
    action = "replace"

    @_schema("replace", None, "Let another connection take the session over")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxFreezeApi(_SandboxControlApi):
    action = "freeze"

    @_schema("freeze", None, "Make the connection a zombie: it looks up, nothing comes through")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxBanApi(_SandboxControlApi):
    action = "ban"

    @_schema("ban", SandboxBanInputSerializer, "Ban the number for a while (logins refused)")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxOutdateApi(_SandboxControlApi):
    action = "outdate"

    @_schema("outdate", None, "WhatsApp refuses this client version (405)")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxReceiptsApi(_SandboxControlApi):
    action = "receipts"

    @_schema("receipts", SandboxReceiptsInputSerializer, "How receipts come from now on")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxPresenceApi(_SandboxControlApi):
    action = "presence"

    @_schema("presence", SandboxPresenceInputSerializer, "A contact comes online, or types")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxBlockApi(_SandboxControlApi):
    action = "block"

    @_schema("block", SandboxBlockInputSerializer, "The phone blocks or unblocks a contact")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxGroupEventApi(_SandboxControlApi):
    action = "group_event"

    @_schema("group_event", SandboxGroupEventInputSerializer, "A group's other members act")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)


class SandboxHistoryApi(_SandboxControlApi):
    action = "history"

    @_schema("history", SandboxHistoryInputSerializer, "WhatsApp sends the phone's history")
    def post(self, request: Request, session_id: object) -> Response:
        return self.control(request, session_id)
