"""The session API: thin views that validate, call one service or selector, and serialize."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.core.api import ApiView, ListApiView, recipient
from gateway.core.errors import ApiError, Conflict, InvalidValue
from gateway.core.jids import RECIPIENT_PATTERN
from gateway.core.openapi import errors
from gateway.core.pictures import picture_jpeg
from gateway.core.scopes import client_of
from gateway.core.throttling import rate_or_raise
from sessions_app import selectors, services
from sessions_app.models import Session
from sessions_app.serializers import (
    PictureInputSerializer,
    PictureSerializer,
    SessionCreateInputSerializer,
    SessionFilterSerializer,
    SessionMigrateInputSerializer,
    SessionOutputSerializer,
    UsageQuerySerializer,
    UsageSerializer,
)
from sessions_app.services import calls, qr
from sessions_app.tokens import ws_token_make
from workers.selectors import worker_find

TAG = ["sessions"]


class ExternalIdTaken(Conflict):
    code = "external_id_taken"
    message = "Another session has this `external_id`."


class SessionListCreateApi(ListApiView):
    serializer_class = SessionOutputSerializer
    required_scope = {"GET": "read", "POST": "control"}

    def get_queryset(self) -> QuerySet[Session]:
        filters = SessionFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.session_list(
            filters=filters.validated_data, client=client_of(self.request)
        )

    @extend_schema(
        operation_id="sessions_list",
        tags=TAG,
        parameters=[SessionFilterSerializer],
        responses={200: SessionOutputSerializer(many=True), **errors(400, 422)},
        summary="List sessions",
        description="Newest first, with cursor pagination "
        "(`next`/`previous` links; `page_size` up to 200). Only the sessions the credentials may "
        "reach (a scoped key: its sessions and those it created).",
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    @extend_schema(
        operation_id="sessions_create",
        tags=TAG,
        request=SessionCreateInputSerializer,
        responses={
            201: SessionOutputSerializer,
            200: SessionOutputSerializer,
            **errors(400, 409, 413, 415, 422),
        },
        summary="Create a session",
        description="Creates a session and, unless `start` is false, asks a worker to start "
        "linking it (the `control` scope). With an `external_id` that already exists, returns "
        "that session (200) unchanged; 409 `external_id_taken` when it is a session these "
        "credentials may not reach. A session created by a scoped key is one of that key's "
        "sessions from then on.",
    )
    def post(self, request: Request) -> Response:
        data = SessionCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        client = client_of(request)
        session, created = services.session_create(
            **data.validated_data, created_by_key_id=client.key_id if client else None
        )
        if not created and client is not None and not client.may_see(session.pk):
            raise ExternalIdTaken()
        return Response(
            SessionOutputSerializer(session).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class SessionDetailApi(ApiView):
    required_scope = {"GET": "read", "DELETE": "control"}

    @extend_schema(
        operation_id="sessions_retrieve",
        tags=TAG,
        responses={200: SessionOutputSerializer, **errors(404)},
        summary="Get a session",
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        session = selectors.session_get(session_id=session_id)
        return Response(SessionOutputSerializer(session).data)

    @extend_schema(
        operation_id="sessions_delete",
        tags=TAG,
        responses={204: None, 202: SessionOutputSerializer, **errors(404)},
        summary="Delete a session",
        description="Logs the session out, then deletes it with its auth state, messages and "
        "media. 204 when it is gone now; 202 when the worker running it must log it out first "
        "(it is deleted moments later).",
    )
    def delete(self, request: Request, session_id: uuid.UUID) -> Response:
        session = selectors.session_get(session_id=session_id)
        if services.session_delete(session=session):
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(SessionOutputSerializer(session).data, status=status.HTTP_202_ACCEPTED)


class _SessionRequestApi(ApiView):
    """POST that changes what is wanted of a session; its worker makes it so. Answers 202."""

    required_scope = "control"
    service = staticmethod(services.session_request_start)

    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        session = self.service(session=selectors.session_get(session_id=session_id))
        return Response(SessionOutputSerializer(session).data, status=status.HTTP_202_ACCEPTED)


def _request_schema(name: str, summary: str, description: str):
    conflict = errors(409) if name in ("start", "restart") else {}
    return extend_schema(
        operation_id=f"sessions_{name}",
        tags=TAG,
        request=None,
        responses={202: SessionOutputSerializer, **errors(404), **conflict},
        summary=summary,
        description=description,
    )


class SessionStartApi(_SessionRequestApi):
    service = staticmethod(services.session_request_start)

    @_request_schema(
        "start",
        "Start a session",
        "Sets `desired_state=running`; a worker claims "
        "the session and connects it (or shows a QR code).",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        return super().post(request, session_id)


class SessionStopApi(_SessionRequestApi):
    service = staticmethod(services.session_request_stop)

    @_request_schema(
        "stop",
        "Stop a session",
        "Sets `desired_state=stopped`; its worker "
        "disconnects it and keeps the auth state, so a later start needs no QR scan.",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        return super().post(request, session_id)


class SessionRestartApi(_SessionRequestApi):
    service = staticmethod(services.session_request_restart)

    @_request_schema(
        "restart",
        "Restart a session",
        "Disconnects and reconnects the session "
        "from its auth state (and starts it if it was stopped).",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        return super().post(request, session_id)


class SessionLogoutApi(_SessionRequestApi):
    service = staticmethod(services.session_request_logout)

    @_request_schema(
        "logout",
        "Log a session out",
        "Unlinks the device on WhatsApp and deletes "
        "the auth state. A running session then starts over with a new QR code.",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        return super().post(request, session_id)


class SessionMigrateApi(ApiView):
    required_scope = "control"

    @extend_schema(
        operation_id="sessions_migrate",
        tags=TAG,
        request=SessionMigrateInputSerializer,
        responses={202: SessionOutputSerializer, **errors(400, 404, 409, 413, 415, 422)},
        summary="Move a session to another worker",
        description="The worker running it disconnects, snapshots its auth state and releases it; "
        "the target restores it and reconnects, with no QR scan. 409 `no_worker_available` when "
        "no other active worker runs the session's engine.",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        data = SessionMigrateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = selectors.session_get(session_id=session_id)
        target = None
        if data.validated_data["worker"]:
            target = worker_find(worker_id=data.validated_data["worker"])
            if target is None:
                raise ValidationError({"worker": ["No such worker."]})
        session = services.session_request_migrate(session=session, target=target)
        return Response(SessionOutputSerializer(session).data, status=status.HTTP_202_ACCEPTED)


class SessionQrOutputSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="What the QR code encodes.")
    image = serializers.CharField(help_text="The QR code as a PNG data URL.")
    expires_at = serializers.DateTimeField()


class SessionQrApi(ApiView):
    """The current QR code, from the cache (it is never stored in the database). Whoever has it
    can link a phone: the `control` scope."""

    required_scope = "control"

    def perform_content_negotiation(self, request: Request, force: bool = False):
        # PNG is answered by hand below; everything else, errors included, is JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="sessions_qr",
        tags=TAG,
        responses={
            (200, "application/json"): SessionQrOutputSerializer,
            (200, "image/png"): OpenApiTypes.BINARY,
            **errors(404, 409, 503),
        },
        summary="Get the current QR code",
        description="JSON with the code, a PNG data URL and its expiry, or the PNG itself with "
        "`Accept: image/png` (drawn once per code, when first asked for). 409 "
        "`qr_not_available` when the session is not showing one (it is not linking, or is "
        "already linked); 503 `cache_unavailable` when the cache is down.",
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response | HttpResponse:
        session = selectors.session_get(session_id=session_id)
        current = qr.qr_current(session_id=session.pk, status=session.status)
        image = qr.code_image(current)
        if "image/png" in request.headers.get("Accept", ""):
            png = base64.b64decode(image.removeprefix("data:image/png;base64,"))
            return HttpResponse(
                png, content_type="image/png", headers={"Cache-Control": "no-store"}
            )
        expires_at = datetime.fromtimestamp(current["expires_at"], tz=UTC)
        return Response(
            {"code": current["code"], "image": image, "expires_at": expires_at},
            headers={"Cache-Control": "no-store"},
        )


class SessionWsTokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()
    url = serializers.CharField(help_text="The WebSocket URL with the token in it.")
    link_url = serializers.CharField(help_text="The link page for the end user, with the token.")
    expires_at = serializers.DateTimeField()


class SessionWsTokenApi(ApiView):
    required_scope = "control"  # the socket carries the QR and pairing codes

    @extend_schema(
        operation_id="sessions_ws_token",
        tags=TAG,
        request=None,
        responses={201: SessionWsTokenOutputSerializer, **errors(404)},
        summary="Get a token for the session's WebSocket",
        description="For a browser (e.g. the backend's front end showing the QR to its user): "
        "opens `/ws/sessions/{id}/` for this one session, for `WS_TOKEN_SECONDS`. Messages are "
        "`session.status`, `session.qr` and `session.pair_code`, with the webhook's fields: "
        "`session.qr` carries the code's text (`qr: {code, expires_at}`), to draw in the browser "
        "(or ask `GET …/qr` for the PNG).",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        session = selectors.session_get(session_id=session_id)
        token = ws_token_make(session.pk)
        page = settings.PUBLIC_URL or request.build_absolute_uri("/").rstrip("/")
        socket = "ws" + page.removeprefix("http")  # http → ws, https → wss
        expires_at = datetime.now(tz=UTC) + timedelta(seconds=settings.WS_TOKEN_SECONDS)
        return Response(
            {
                "token": token,
                "url": f"{socket}/ws/sessions/{session.pk}/?token={token}",
                "link_url": f"{page}/link/{session.pk}/?token={token}",
                "expires_at": expires_at,
            },
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class SessionPairCodeInputSerializer(serializers.Serializer):
    phone_number = serializers.RegexField(
        services.E164, help_text="The number to link, E.164 (e.g. +15550001)."
    )


class SessionPairCodeOutputSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Typed on the phone: Linked devices → Link with phone.")
    expires_at = serializers.DateTimeField()


class SessionPairCodeApi(ApiView):
    required_scope = "control"

    @extend_schema(
        operation_id="sessions_pair_code",
        tags=TAG,
        request=SessionPairCodeInputSerializer,
        responses={
            200: SessionPairCodeOutputSerializer,
            **errors(400, 404, 409, 413, 415, 422, 503),
        },
        summary="Link with a pairing code instead of a QR code",
        description="Asks the worker running the session for a pairing code for `phone_number` "
        "and returns it (waiting up to `WORKER_CALL_SECONDS`). 409 `not_linking` when the "
        "session is not waiting to be linked; 429 `rate_limited` (with `Retry-After`) past "
        "`PAIR_CODE_RATE` codes for the session or the number; 503 `pair_code_unavailable` when "
        "no code came in time, `cache_unavailable` when the cache is down (the code still comes "
        "as a `session.status` webhook).",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        data = SessionPairCodeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = selectors.session_get(session_id=session_id)
        code = services.session_pair_code(
            session=session, phone_number=data.validated_data["phone_number"]
        )
        expires_at = datetime.fromtimestamp(code["expires_at"], tz=UTC)
        return Response(
            {"code": code["code"], "expires_at": expires_at}, headers={"Cache-Control": "no-store"}
        )


# --- Presence -------------------------------------------------------------------------------------

CHAT = OpenApiParameter(
    "chat",
    {"type": "string", "pattern": RECIPIENT_PATTERN},
    OpenApiParameter.PATH,
    description="The chat: an E.164 number (+4915123456789) or a JID (…@s.whatsapp.net, …@lid, "
    "…@g.us).",
)
# What every call through the session's worker (presence, blocklist) may answer.
SESSION_CALL = (
    "Through the worker running the session (waiting up to `WORKER_CALL_SECONDS`): 409 "
    "`session_not_running` when the session is not connected, 503 `session_unavailable` when "
    "its worker does not answer, 409 with the engine's code (e.g. `presence_failed`) when "
    "WhatsApp refused."
)


class PresenceInputSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["available", "unavailable"], help_text="Online or offline to contacts."
    )


class ChatPresenceInputSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["typing", "recording", "paused"],
        help_text="`recording` a voice note; `paused` clears the indicator.",
    )


class ChatPresenceOutputSerializer(serializers.Serializer):
    chat = serializers.CharField(help_text="The chat's JID.")
    state = serializers.CharField()


class PresenceSubscribedSerializer(serializers.Serializer):
    chat = serializers.CharField(help_text="The contact's JID.")
    subscribed = serializers.BooleanField()


class SessionPresenceApi(ApiView):
    @extend_schema(
        operation_id="sessions_presence",
        tags=TAG,
        request=PresenceInputSerializer,
        responses={200: PresenceInputSerializer, **errors(400, 404, 409, 413, 415, 422, 503)},
        summary="Show the number online or offline",
        description="Online (`available`) is also what makes WhatsApp send contacts' online "
        "status to subscribers (`POST …/presence/{chat}/subscribe`). " + SESSION_CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        data = PresenceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = selectors.session_get(session_id=session_id)
        calls.session_call(session, "set_presence", state=data.validated_data["state"])
        return Response(data.validated_data)


class ChatPresenceApi(ApiView):
    @extend_schema(
        operation_id="sessions_chat_presence",
        tags=TAG,
        parameters=[CHAT],
        request=ChatPresenceInputSerializer,
        responses={
            200: ChatPresenceOutputSerializer,
            **errors(400, 404, 409, 413, 415, 422, 503),
        },
        summary="Show typing or recording in a chat",
        description="What the chat sees until `paused` (or a message is sent). " + SESSION_CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID, chat: str) -> Response:
        data = ChatPresenceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = selectors.session_get(session_id=session_id)
        jid, state = recipient(chat), data.validated_data["state"]
        calls.session_call(session, "set_chat_presence", chat=jid, state=state)
        return Response({"chat": jid, "state": state})


class PresenceSubscribeApi(ApiView):
    @extend_schema(
        operation_id="sessions_presence_subscribe",
        tags=TAG,
        parameters=[CHAT],
        request=None,
        responses={200: PresenceSubscribedSerializer, **errors(404, 409, 422, 503)},
        summary="Follow a contact's online status",
        description="The contact's online/offline changes (and last seen, when they share it) "
        "arrive as `presence.update` webhooks while the session shows itself online; typing and "
        "recording in chats arrive without subscribing (also only while online). WhatsApp keeps "
        "neither across connections: subscribe, and show the number online, again after each "
        "`connected`. " + SESSION_CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID, chat: str) -> Response:
        session = selectors.session_get(session_id=session_id)
        jid = recipient(chat, no_group="A group has no online status; follow its members.")
        calls.session_call(session, "subscribe_presence", chat=jid)
        return Response({"chat": jid, "subscribed": True})


# --- Blocking -------------------------------------------------------------------------------------


class BlockedSerializer(serializers.Serializer):
    jid = serializers.CharField(help_text="As WhatsApp keeps it (often a @lid JID).")
    phone_number = serializers.CharField(help_text='E.164, when the session knows it; or "".')


class BlocklistSerializer(serializers.Serializer):
    blocked = BlockedSerializer(many=True)


class BlocklistUpdateInputSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["block", "unblock"])
    number = serializers.RegexField(
        RECIPIENT_PATTERN,
        max_length=100,
        help_text="E.164 (+4915123456789) or a user's JID (…@s.whatsapp.net, …@lid).",
    )


class SessionBlocklistApi(ApiView):
    @extend_schema(
        operation_id="sessions_blocklist",
        tags=TAG,
        responses={200: BlocklistSerializer, **errors(404, 409, 503)},
        summary="Who the number has blocked",
        description=SESSION_CALL,
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        session = selectors.session_get(session_id=session_id)
        blocked = calls.session_call(session, "blocklist")
        return Response({"blocked": blocked})

    @extend_schema(
        operation_id="sessions_blocklist_update",
        tags=TAG,
        request=BlocklistUpdateInputSerializer,
        responses={200: BlocklistSerializer, **errors(400, 404, 409, 413, 415, 422, 503)},
        summary="Block or unblock a contact",
        description="Answers with the blocklist after the change. 409 `not_on_whatsapp` for a "
        "number WhatsApp does not know. " + SESSION_CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        data = BlocklistUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = selectors.session_get(session_id=session_id)
        jid = recipient(
            data.validated_data["number"], no_group="Groups cannot be blocked; leave them."
        )
        blocked = calls.session_call(
            session, "update_blocklist", jid=jid, action=data.validated_data["action"]
        )
        return Response({"blocked": blocked})


# --- Contacts and the profile ---------------------------------------------------------------------


class ContactOutputSerializer(serializers.Serializer):
    jid = serializers.CharField(help_text="The number's JID when known, else the @lid.")
    lid = serializers.CharField(help_text='The @lid WhatsApp hides the number behind, or "".')
    phone_number = serializers.CharField(help_text='E.164 when known, else "".')
    on_whatsapp = serializers.BooleanField()
    push_name = serializers.CharField(help_text="The name they chose, as the session knows it.")
    about = serializers.CharField()
    picture_url = serializers.CharField(allow_null=True, help_text="Null: none, or hidden.")
    is_business = serializers.BooleanField()


class LidOutputSerializer(serializers.Serializer):
    lid = serializers.CharField()
    phone_number = serializers.CharField()


class ProfileOutputSerializer(serializers.Serializer):
    jid = serializers.CharField()
    phone_number = serializers.CharField()
    name = serializers.CharField(help_text="The push name contacts see.")
    about = serializers.CharField()
    picture_url = serializers.CharField(allow_null=True)


class ProfileUpdateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=25, required=False, help_text="WhatsApp allows 25.")
    about = serializers.CharField(
        max_length=139, required=False, allow_blank=True, help_text="WhatsApp allows 139."
    )

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError("Give `name`, `about` or both.")
        return attrs


class ContactApi(ApiView):
    @extend_schema(
        operation_id="sessions_contact",
        tags=TAG,
        parameters=[
            OpenApiParameter(
                "contact",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="E.164 (+4915123456789) or a user's JID (…@s.whatsapp.net, …@lid).",
            )
        ],
        responses={200: ContactOutputSerializer, **errors(404, 409, 422, 429, 503)},
        summary="Look a contact up",
        description="Whether they are on WhatsApp, their @lid and number, name, about text, "
        "picture and whether they are a business: queries to WhatsApp, so at most "
        "`CONTACT_LOOKUP_RATE` per session. " + SESSION_CALL,
    )
    def get(self, request: Request, session_id: uuid.UUID, contact: str) -> Response:
        session = selectors.session_get(session_id=session_id)
        jid = recipient(contact, no_group="Groups are under …/groups.")
        calls.session_connected(session)
        rate_or_raise(
            f"contact_lookup:session:{session.pk}",
            settings.CONTACT_LOOKUP_RATE,
            "Too many contact lookups for this session.",
        )
        return Response(calls.session_call(session, "contact", jid=jid))


class LidApi(ApiView):
    @extend_schema(
        operation_id="sessions_lid",
        tags=TAG,
        responses={200: LidOutputSerializer, **errors(404, 409, 422, 503)},
        summary="The phone number behind a @lid",
        description="As the session knows it (from messages, groups and lookups); 404 "
        "`lid_unknown` when WhatsApp has not told it. " + SESSION_CALL,
    )
    def get(self, request: Request, session_id: uuid.UUID, lid: str) -> Response:
        if not re.fullmatch(r"[0-9]{1,30}@lid", lid):
            raise InvalidValue(f"{lid!r} is not a @lid JID.")
        session = selectors.session_get(session_id=session_id)
        phone = calls.session_call(session, "phone_of_lid", lid=lid)
        if not phone:
            raise ApiError(
                "The session does not know this @lid's number.", code="lid_unknown", status=404
            )
        return Response({"lid": lid, "phone_number": phone})


class ProfileApi(ApiView):
    @extend_schema(
        operation_id="sessions_profile",
        tags=TAG,
        responses={200: ProfileOutputSerializer, **errors(404, 409, 503)},
        summary="The linked number's profile",
        description=SESSION_CALL,
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        session = selectors.session_get(session_id=session_id)
        return Response(calls.session_call(session, "profile"))

    @extend_schema(
        operation_id="sessions_profile_update",
        tags=TAG,
        request=ProfileUpdateInputSerializer,
        responses={200: ProfileOutputSerializer, **errors(400, 404, 409, 413, 415, 422, 503)},
        summary="Set the number's name and about text",
        description=SESSION_CALL,
    )
    def patch(self, request: Request, session_id: uuid.UUID) -> Response:
        data = ProfileUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = selectors.session_get(session_id=session_id)
        return Response(calls.session_call(session, "update_profile", **data.validated_data))


class ProfilePictureApi(ApiView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="sessions_profile_picture",
        tags=TAG,
        request={"multipart/form-data": PictureInputSerializer},
        responses={200: PictureSerializer, **errors(400, 404, 409, 413, 415, 422, 503)},
        summary="Set the number's picture",
        description="Upload `file` (JPEG or PNG, up to `PICTURE_MAX_BYTES`). " + SESSION_CALL,
    )
    def put(self, request: Request, session_id: uuid.UUID) -> Response:
        session = selectors.session_get(session_id=session_id)
        jpeg = picture_jpeg(request.FILES.get("file"))
        picture = calls.session_call(session, "set_profile_picture", jpeg_base64=jpeg)
        return Response({"picture_id": picture})


class UsageApi(ApiView):
    @extend_schema(
        operation_id="usage_list",
        tags=["usage"],
        parameters=[UsageQuerySerializer],
        responses={200: UsageSerializer, **errors(400, 404, 422)},
        summary="Usage per session and period",
        description="What each session did per hour or day (UTC): messages sent through the "
        "gateway, delivered, read and failed (each counted once, when it first gets there; "
        "also per message type), received, media bytes sent and received, webhooks delivered "
        "and given up. From counters kept as it happens, in the hour it happened: deleting "
        "messages does not change them. `from` is rounded down and `to` up to whole periods; "
        "by default the last 24 hours. Periods without activity are left out. At most 31 days "
        "of hours or 366 days of days (422 beyond); 404 for an unknown `session`. Credentials "
        "limited to some sessions see only theirs (another's `session` is a 404 too).",
    )
    def get(self, request: Request) -> Response:
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        asked = query.validated_data
        results = selectors.usage_for(
            sessions=selectors.usage_sessions(
                session_id=asked.get("session"), client=client_of(request)
            ),
            start=asked["from"],
            end=asked["to"],
            granularity=asked["granularity"],
        )
        return Response(
            UsageSerializer(
                {
                    "from": asked["from"],
                    "to": asked["to"],
                    "granularity": asked["granularity"],
                    "results": results,
                }
            ).data
        )
