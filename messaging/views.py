"""The message API: send (JSON or multipart, idempotent), history, detail, mark read, check
numbers; and the signed temporary media URLs of the embedded mode."""

from __future__ import annotations

import re
import uuid

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.core.api import ApiView, ListApiView, recipient
from gateway.core.errors import ApiError
from gateway.core.openapi import errors
from gateway.core.pagination import CreatedCursorPagination
from gateway.core.parsers import SafeJSONParser
from gateway.core.scopes import ensure_visible
from gateway.core.throttling import ClientRateThrottle
from messaging import selectors, services
from messaging.models import Message
from messaging.serializers import (
    ChatReadSerializer,
    ChatSerializer,
    CheckNumbersInputSerializer,
    MessageCreateInputSerializer,
    MessageEditInputSerializer,
    MessageFilterSerializer,
    MessageOutputSerializer,
    MessageUploadInputSerializer,
    NumberCheckSerializer,
)
from messaging.services import media
from sessions_app.selectors import session_get
from sessions_app.services import calls

TAG = ["messages"]
# Printable ASCII: a header value any HTTP client and proxy carries unchanged.
IDEMPOTENCY_KEY_PATTERN = r"^[ -~]{1,200}$"
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    OpenApiParameter.HEADER,
    description="The same key and body again returns the same message (200); the same key with "
    "another body is a 422. 1 to 200 printable ASCII characters.",
)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):  # the contract check has said so already
        raise ApiError(
            "Idempotency-Key must be 1 to 200 printable ASCII characters.", code="validation_error"
        )
    return key


class SessionMessagesApi(ListApiView):
    serializer_class = MessageOutputSerializer
    parser_classes = [SafeJSONParser, MultiPartParser]

    def get_queryset(self) -> QuerySet[Message]:
        filters = MessageFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        session = session_get(session_id=self.kwargs["session_id"])
        return selectors.messages_list(session=session, filters=filters.validated_data)

    @extend_schema(
        operation_id="messages_list",
        tags=TAG,
        parameters=[MessageFilterSerializer],
        responses={200: MessageOutputSerializer(many=True), **errors(400, 404, 422)},
        summary="A session's messages",
        description="Newest first, cursor pagination. Media appear without URLs here; "
        "`GET /messages/{id}` gives a temporary one.",
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        return super().get(request)

    @extend_schema(
        operation_id="messages_send",
        tags=TAG,
        parameters=[IDEMPOTENCY_KEY],
        request={
            "application/json": MessageCreateInputSerializer,
            "multipart/form-data": MessageUploadInputSerializer,
        },
        responses={
            202: MessageOutputSerializer,
            200: MessageOutputSerializer,
            **errors(400, 404, 409, 413, 415, 422),
        },
        summary="Send a message",
        description="Queues the message (202, status `queued`); the worker running the session "
        "sends it at the session's pace, and every status change comes as a `message.status` "
        "webhook. Media as a multipart `file` (a form of the flat fields) or, in JSON, as "
        "`media.url` (fetched by the gateway; only public addresses). 409 `session_not_running` "
        "when the session is stopped, logged out or failed (a reconnecting session keeps its "
        "queue). 413 over the size limits, 415 when the bytes are not what `type` says; 422 for "
        "a well-formed message that cannot be sent as it is (a field its type does not take, a "
        "number that cannot exist, `Idempotency-Key` reused with another body).",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        session = session_get(session_id=session_id)
        key = _idempotency_key(request)
        multipart = request.content_type.lower().startswith("multipart/form-data")
        serializer = MessageUploadInputSerializer if multipart else MessageCreateInputSerializer
        data = serializer(data=request.data)
        data.is_valid(raise_exception=True)
        accepted = services.message_send(
            session=session, idempotency_key=key, **data.send_arguments()
        )
        return Response(
            MessageOutputSerializer(accepted.message).data,
            status=status.HTTP_202_ACCEPTED if accepted.created else status.HTTP_200_OK,
        )


class MessageDetailApi(ApiView):
    @extend_schema(
        operation_id="messages_retrieve",
        tags=TAG,
        responses={200: MessageOutputSerializer, **errors(404)},
        summary="Get a message",
        description="With a temporary `media.url` (valid `MEDIA_URL_SECONDS`).",
    )
    def get(self, request: Request, message_id: uuid.UUID) -> Response:
        message = selectors.message_get(message_id=message_id)
        ensure_visible(request, message.session_id)  # another tenant's message: not found
        return Response(MessageOutputSerializer(message, context={"media_urls": True}).data)


class MessageReadApi(ApiView):
    @extend_schema(
        operation_id="messages_mark_read",
        tags=TAG,
        request=None,
        responses={200: MessageOutputSerializer, **errors(404, 409, 503)},
        summary="Mark an inbound message read",
        description="Sends the read receipt (blue ticks) through the worker running the session. "
        "409 `not_inbound` for outbound messages; 503 `session_unavailable` when no worker "
        "answers.",
    )
    def post(self, request: Request, session_id: uuid.UUID, message_id: uuid.UUID) -> Response:
        message = selectors.message_get(message_id=message_id, session_id=session_id)
        services.message_read(message=message)
        return Response(MessageOutputSerializer(message).data)


class ChatCursorPagination(CreatedCursorPagination):
    ordering = ("-last_activity",)


class ChatListApi(ListApiView):
    serializer_class = ChatSerializer
    pagination_class = ChatCursorPagination

    def get_queryset(self) -> QuerySet:
        session = session_get(session_id=self.kwargs["session_id"])
        return selectors.chats_list(session=session)

    @extend_schema(
        operation_id="chats_list",
        tags=TAG,
        responses={200: ChatSerializer(many=True), **errors(400, 404, 422)},
        summary="A session's conversations",
        description="One row per chat, the most recently active first (cursor pagination): its "
        "JID, the number or the group's subject, the last message, how many inbound messages "
        "are unread.",
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        session = session_get(session_id=session_id)
        page = self.paginate_queryset(selectors.chats_list(session=session))
        rows = selectors.chats_details(session=session, rows=list(page or []))
        return self.get_paginated_response(ChatSerializer(rows, many=True).data)


class ChatMessagesApi(ListApiView):
    serializer_class = MessageOutputSerializer

    def get_queryset(self) -> QuerySet[Message]:
        session = session_get(session_id=self.kwargs["session_id"])
        chat = recipient(self.kwargs["chat"])
        return selectors.messages_list(session=session, filters={"chat": chat})

    @extend_schema(
        operation_id="chats_messages",
        tags=TAG,
        responses={200: MessageOutputSerializer(many=True), **errors(400, 404, 422)},
        summary="One conversation's messages",
        description="`chat` as an E.164 number or a JID; newest first, cursor pagination.",
    )
    def get(self, request: Request, session_id: uuid.UUID, chat: str) -> Response:
        return super().get(request)


class ChatReadApi(ApiView):
    @extend_schema(
        operation_id="chats_read",
        tags=TAG,
        request=None,
        responses={200: ChatReadSerializer, **errors(404, 409, 422, 503)},
        summary="Mark a whole conversation read",
        description="Read receipts (blue ticks) for every inbound message still unread in it, "
        "through the worker running the session (409 `session_not_running` when it is not "
        "connected).",
    )
    def post(self, request: Request, session_id: uuid.UUID, chat: str) -> Response:
        session = session_get(session_id=session_id)
        jid = recipient(chat)
        return Response({"chat": jid, "marked": services.chat_read(session=session, chat=jid)})


class SessionMessageApi(ApiView):
    @extend_schema(
        operation_id="messages_edit",
        tags=TAG,
        request=MessageEditInputSerializer,
        responses={200: MessageOutputSerializer, **errors(400, 404, 409, 413, 415, 422, 503)},
        summary="Edit one of our texts or captions",
        description="A text's `text`, or an image's, video's or document's caption. Still "
        "queued, it changes before it goes; sent, the edit goes to "
        "WhatsApp, which allows it for 15 minutes (409 `edit_window_passed` after), and a "
        "`message.edited` webhook follows. The earlier texts are kept (`edits`). 409 "
        "`not_editable` for others' messages and other types, `message_sending` while it is "
        "being sent.",
    )
    def patch(self, request: Request, session_id: uuid.UUID, message_id: uuid.UUID) -> Response:
        data = MessageEditInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = selectors.message_get(message_id=message_id, session_id=session_id)
        edited = services.message_edit(message=message, text=data.validated_data["text"])
        return Response(MessageOutputSerializer(edited).data)

    @extend_schema(
        operation_id="messages_revoke",
        tags=TAG,
        request=None,
        responses={200: MessageOutputSerializer, **errors(403, 404, 409, 503)},
        summary="Delete a message for everyone",
        description="Still queued, it is cancelled and never goes; sent, it is revoked on "
        "WhatsApp (ours, or anyone's in a group where the number is an admin: 403 `not_admin` "
        "otherwise) within WhatsApp's 60 hours (409 `revoke_window_passed` after). The message "
        "becomes `revoked` and a `message.revoked` webhook follows.",
    )
    def delete(self, request: Request, session_id: uuid.UUID, message_id: uuid.UUID) -> Response:
        message = selectors.message_get(message_id=message_id, session_id=session_id)
        return Response(MessageOutputSerializer(services.message_revoke(message=message)).data)


class CheckNumbersThrottle(ClientRateThrottle):
    scope = "check_numbers"


class CheckNumbersApi(ApiView):
    throttle_classes = [ClientRateThrottle, CheckNumbersThrottle]

    @extend_schema(
        operation_id="sessions_check_numbers",
        tags=TAG,
        request=CheckNumbersInputSerializer,
        responses={
            200: NumberCheckSerializer(many=True),
            **errors(400, 404, 409, 413, 415, 422, 503),
        },
        summary="Which numbers are on WhatsApp",
        description="Up to 50 numbers a call, rate-limited per client (`CHECK_NUMBERS_RATE`): "
        "WhatsApp bans numbers that check in bulk. Asks through the worker running the session; "
        "503 `session_unavailable` when none answers.",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        session = session_get(session_id=session_id)
        data = CheckNumbersInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = calls.call_or_raise(
            session.pk, "check_numbers", phone_numbers=data.validated_data["phone_numbers"]
        )
        return Response(NumberCheckSerializer(result, many=True).data)


def media_download(request: HttpRequest, token: str) -> FileResponse:
    """A temporary media URL of the embedded mode (S3 serves presigned URLs itself), with the
    headers it was signed with; its CSP sandboxes it as well (gateway.core.security)."""
    signed = media.media_from_token(token)
    if signed is None or not default_storage.exists(signed[0]):
        raise Http404("This link is not valid any more.")
    response = FileResponse(default_storage.open(signed[0]))
    for header, value in signed[1].items():
        response[header] = value
    return response
