"""The groups API: thin views over the session's worker (`calls.session_call`, through
`groups.services` where the answer is cached) and the cache.

Reads come from the cache (WhatsApp answers frequent metadata queries with rate-overlimit, and
bans follow); `?refresh=true` asks WhatsApp once and stores the answer."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.core.api import ApiView, recipient
from gateway.core.errors import InvalidValue
from gateway.core.openapi import errors
from gateway.core.pictures import picture_jpeg
from gateway.core.throttling import rate_or_raise
from groups import selectors, services
from groups.serializers import (
    GroupCreatedSerializer,
    GroupCreateInputSerializer,
    GroupDetailSerializer,
    GroupListSerializer,
    GroupUpdateInputSerializer,
    InviteLinkSerializer,
    JoinInputSerializer,
    ParticipantsInputSerializer,
    ParticipantsResultSerializer,
)
from sessions_app.selectors import session_get
from sessions_app.serializers import PictureInputSerializer, PictureSerializer
from sessions_app.services.calls import session_call, session_connected
from sessions_app.states import SessionStatus

TAG = ["groups"]
GROUP_JID = re.compile(r"^[0-9]+(-[0-9]+)?@g\.us$")
CALL = (
    "Through the worker running the session: 409 `session_not_running` when it is not "
    "connected, 503 `session_unavailable` when its worker does not answer in time; WhatsApp's "
    "refusals keep their code: 404 `group_not_found` / `not_in_group`, 403 `not_admin`, 429 "
    "`rate_limited`, 409 for the others."
)
REFRESH = OpenApiParameter(
    "refresh",
    OpenApiTypes.BOOL,
    description="Ask WhatsApp now (one metadata query) instead of serving the cache.",
)


def _group_jid(jid: str) -> str:
    if not GROUP_JID.match(jid):
        raise InvalidValue(f"{jid!r} is not a group JID (…@g.us).")
    return jid


def _users(values: list[str]) -> list[str]:
    return [recipient(value, no_group="Participants are users, not groups.") for value in values]


def _refresh(request: Request) -> bool:
    return serializers.BooleanField().to_internal_value(
        request.query_params.get("refresh", "false")
    )


def _limited(kind: str, session_id: uuid.UUID, rate: str | None) -> None:
    """WhatsApp judges the number: `rate` per session for the calls it punishes."""
    message = f"Too many {kind.replace('_', ' ')} calls for this session."
    rate_or_raise(f"{kind}:session:{session_id}", rate, message)


def _results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The engines' participant results, their expiry as a time."""
    return [{**r, "invite_expires_at": services.when(r.get("invite_expires_at"))} for r in results]


def _detail(row: Any) -> dict[str, Any]:
    return dict(GroupDetailSerializer(row).data)


class GroupListCreateApi(ApiView):
    @extend_schema(
        operation_id="groups_list",
        tags=TAG,
        parameters=[REFRESH],
        responses={200: GroupListSerializer, **errors(400, 404, 409, 422, 429, 503)},
        summary="The groups the number is in",
        description="From the cache the worker keeps fresh from group events; fetched from "
        "WhatsApp on the first call of a connected session and with `refresh=true`. " + CALL,
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        session = session_get(session_id=session_id)
        synced = selectors.groups_synced_at(session_id=session.pk)
        if _refresh(request) or (synced is None and session.status == SessionStatus.CONNECTED):
            services.groups_refresh(session=session)
            synced = selectors.groups_synced_at(session_id=session.pk)
        rows = selectors.groups_list(session_id=session.pk)
        return Response(GroupListSerializer({"groups": list(rows), "synced_at": synced}).data)

    @extend_schema(
        operation_id="groups_create",
        tags=TAG,
        request=GroupCreateInputSerializer,
        responses={201: GroupCreatedSerializer, **errors(400, 404, 409, 413, 415, 422, 429, 503)},
        summary="Create a group",
        description="The number becomes the group's super admin. Each participant's outcome "
        "comes back: `ok`, or why not (`invite_required` with a code when their privacy settings "
        "allow only invites, `not_found` when not on WhatsApp, …). At most `GROUP_CREATE_RATE` "
        "per session. " + CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        data = GroupCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = session_get(session_id=session_id)
        participants = _users(data.validated_data["participants"])
        session_connected(session)
        _limited("group_create", session.pk, settings.GROUP_CREATE_RATE)
        created = services.group_create(
            session=session, subject=data.validated_data["subject"], participants=participants
        )
        body = {"group": _detail(created.group), "participants": _results(created.participants)}
        return Response(GroupCreatedSerializer(body).data, status=status.HTTP_201_CREATED)


class GroupDetailApi(ApiView):
    @extend_schema(
        operation_id="groups_get",
        tags=TAG,
        parameters=[REFRESH],
        responses={200: GroupDetailSerializer, **errors(400, 403, 404, 409, 422, 429, 503)},
        summary="A group with its participants",
        description="From the cache; from WhatsApp when the group is not cached yet or with "
        "`refresh=true`. " + CALL,
    )
    def get(self, request: Request, session_id: uuid.UUID, jid: str) -> Response:
        session = session_get(session_id=session_id)
        row = selectors.group_cached(session_id=session.pk, jid=_group_jid(jid))
        if row is None or _refresh(request):
            row = services.group_fetch(session=session, jid=jid)
        return Response(_detail(row))

    @extend_schema(
        operation_id="groups_update",
        tags=TAG,
        request=GroupUpdateInputSerializer,
        responses={
            200: GroupDetailSerializer,
            **errors(400, 403, 404, 409, 413, 415, 422, 429, 503),
        },
        summary="Rename a group, describe it, make it announce-only or locked",
        description="`announce`: only admins send; `locked`: only admins edit the group's info. "
        "A `group.updated` webhook follows. " + CALL,
    )
    def patch(self, request: Request, session_id: uuid.UUID, jid: str) -> Response:
        data = GroupUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = session_get(session_id=session_id)
        row = services.group_update(session=session, jid=_group_jid(jid), **data.validated_data)
        return Response(_detail(row))


class GroupPictureApi(ApiView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="groups_picture",
        tags=TAG,
        request={"multipart/form-data": PictureInputSerializer},
        responses={200: PictureSerializer, **errors(400, 403, 404, 409, 413, 415, 422, 503)},
        summary="Set a group's picture",
        description="Upload `file` (JPEG or PNG, up to `PICTURE_MAX_BYTES`). " + CALL,
    )
    def put(self, request: Request, session_id: uuid.UUID, jid: str) -> Response:
        session = session_get(session_id=session_id)
        jpeg = picture_jpeg(request.FILES.get("file"))
        picture = session_call(session, "set_group_picture", jid=_group_jid(jid), jpeg_base64=jpeg)
        return Response({"picture_id": picture})


class GroupParticipantsApi(ApiView):
    @extend_schema(
        operation_id="groups_participants",
        tags=TAG,
        request=ParticipantsInputSerializer,
        responses={
            200: ParticipantsResultSerializer,
            **errors(400, 403, 404, 409, 413, 415, 422, 429, 503),
        },
        summary="Add, remove, promote or demote participants",
        description="A result for each participant; a `group.participants` webhook follows for "
        "those changed. Adds count against `GROUP_ADD_RATE` per session. " + CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID, jid: str) -> Response:
        data = ParticipantsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = session_get(session_id=session_id)
        participants = _users(data.validated_data["participants"])
        action = data.validated_data["action"]
        if action == "add":
            session_connected(session)
            _limited("group_add", session.pk, settings.GROUP_ADD_RATE)
        results = session_call(
            session,
            "update_participants",
            jid=_group_jid(jid),
            action=action,
            participants=participants,
        )
        return Response(ParticipantsResultSerializer({"participants": _results(results)}).data)


def _invite_link(session_id: uuid.UUID, jid: str, *, revoke: bool) -> Response:
    session = session_get(session_id=session_id)
    link = session_call(session, "group_invite_link", jid=_group_jid(jid), revoke=revoke)
    return Response({"invite_link": link})


class GroupInviteLinkApi(ApiView):
    @extend_schema(
        operation_id="groups_invite_link",
        tags=TAG,
        responses={200: InviteLinkSerializer, **errors(403, 404, 409, 422, 503)},
        summary="The group's invite link",
        description="403 `not_admin` unless the number is an admin. " + CALL,
    )
    def get(self, request: Request, session_id: uuid.UUID, jid: str) -> Response:
        return _invite_link(session_id, jid, revoke=False)


class GroupInviteRevokeApi(ApiView):
    @extend_schema(
        operation_id="groups_invite_link_revoke",
        tags=TAG,
        request=None,
        responses={200: InviteLinkSerializer, **errors(403, 404, 409, 422, 503)},
        summary="Revoke the invite link (a new one replaces it)",
        description="The old link stops working. " + CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID, jid: str) -> Response:
        return _invite_link(session_id, jid, revoke=True)


class JoinedSerializer(serializers.Serializer):
    jid = serializers.CharField(help_text="The group's JID; a `group.joined` webhook follows.")


class GroupJoinApi(ApiView):
    @extend_schema(
        operation_id="groups_join",
        tags=TAG,
        request=JoinInputSerializer,
        responses={200: JoinedSerializer, **errors(400, 404, 409, 410, 413, 415, 422, 503)},
        summary="Join a group by its invite link",
        description="410 `invite_revoked` for a revoked link, 422 `invite_invalid` for one "
        "WhatsApp does not know. " + CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        data = JoinInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = session_get(session_id=session_id)
        jid = session_call(session, "join_group", link=data.validated_data["invite_link"])
        return Response({"jid": jid})


class GroupLeaveApi(ApiView):
    @extend_schema(
        operation_id="groups_leave",
        tags=TAG,
        request=None,
        responses={204: None, **errors(404, 409, 422, 503)},
        summary="Leave a group",
        description="The group goes on for the others; a `group.participants` webhook (remove) "
        "follows. " + CALL,
    )
    def post(self, request: Request, session_id: uuid.UUID, jid: str) -> Response:
        session = session_get(session_id=session_id)
        services.group_leave(session=session, jid=_group_jid(jid))
        return Response(status=status.HTTP_204_NO_CONTENT)
