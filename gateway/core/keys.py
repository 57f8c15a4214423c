"""`/api/v1/keys`: API keys managed through the API (the `manage` scope).

A key's id is its prefix (the part of the key before the dot); the key itself is answered once,
when it is made, and stored hashed by djangorestframework-api-key. Credentials see, and may revoke,
only the keys within their own power (sessions and scopes no wider than theirs), and may make only
such keys (403 `forbidden_scope` otherwise; gateway/core/scopes.py). A key expires no later than
the key that made it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_api_key.models import AbstractAPIKey, APIKey

from gateway.core.api import ApiView, ListApiView
from gateway.core.auth import ApiClient
from gateway.core.errors import ForbiddenScope, InvalidValue, NotFound
from gateway.core.models import SCOPES, ScopedAPIKey, normal_scopes, normal_sessions
from gateway.core.openapi import errors
from gateway.core.pagination import CreatedCursorPagination
from gateway.core.scopes import client_of

TAG = ["keys"]
MAX_SESSIONS = 1000
KEY_ID = OpenApiParameter(
    "key_id",
    {"type": "string", "pattern": "^[A-Za-z0-9]{8}$"},
    OpenApiParameter.PATH,
    description="The key's id: its prefix, the part of the key before the dot.",
)


class KeyCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=50, help_text="For people; need not be unique.")
    sessions = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        allow_null=True,
        max_length=MAX_SESSIONS,
        help_text="The sessions it may reach (and those it creates). Omitted or null: every "
        "session. Empty: only those it creates.",
    )
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=SCOPES),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=len(SCOPES),
        help_text="What it may do (`read`, `send`, `control`, `manage`). Omitted or null: "
        "everything.",
    )
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="When it stops working. Omitted: never, or when the key making it expires.",
    )


class KeyOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Its prefix: the part of the key before the dot.")
    prefix = serializers.CharField()
    name = serializers.CharField()
    sessions = serializers.ListField(
        child=serializers.UUIDField(), allow_null=True, help_text="Null: every session."
    )
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=SCOPES), allow_null=True, help_text="Null: all."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    created = serializers.DateTimeField()


class KeyCreatedSerializer(KeyOutputSerializer):
    key = serializers.CharField(help_text="The key itself: shown this once, stored hashed.")


def _scoped(api_key: AbstractAPIKey) -> ScopedAPIKey | None:
    if isinstance(api_key, ScopedAPIKey):
        return api_key
    return getattr(api_key, "scopedapikey", None)


def key_out(api_key: AbstractAPIKey) -> dict[str, Any]:
    scoped = _scoped(api_key)
    return {
        "id": api_key.prefix,
        "prefix": api_key.prefix,
        "name": api_key.name,
        "sessions": scoped.sessions if scoped else None,
        "scopes": scoped.scopes if scoped else None,
        "expires_at": api_key.expiry_date,
        "created": api_key.created,
    }


def _within(api_key: AbstractAPIKey, client: ApiClient, visible: frozenset[str] | None) -> bool:
    """Whether the key's power is within the caller's (`visible`: the caller's sessions)."""
    scoped = _scoped(api_key)
    sessions, scopes = (scoped.sessions, scoped.scopes) if scoped else (None, None)
    if not (client.scopes is None or (scopes is not None and set(scopes) <= client.scopes)):
        return False
    return visible is None or (sessions is not None and set(sessions) <= visible)


def keys_visible(client: ApiClient | None) -> QuerySet[APIKey]:
    """The usable keys the caller may see: all for a staff member or full access."""
    keys = APIKey.objects.filter(revoked=False).select_related("scopedapikey")
    if client is None or (client.scopes is None and client.sessions is None):
        return keys
    visible = client.visible_ids()
    return keys.filter(pk__in=[key.pk for key in keys if _within(key, client, visible)])


class KeyCursorPagination(CreatedCursorPagination):
    ordering = ("-created", "-id")


class _KeysApi:
    required_scope = "manage"
    staff_model = "core.scopedapikey"


class KeyListCreateApi(_KeysApi, ListApiView):
    serializer_class = KeyOutputSerializer
    pagination_class = KeyCursorPagination

    def get_queryset(self) -> QuerySet[APIKey]:
        return keys_visible(client_of(self.request))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([key_out(key) for key in page or []])

    @extend_schema(
        operation_id="keys_list",
        tags=TAG,
        responses={200: KeyOutputSerializer(many=True), **errors(400, 422)},
        summary="List API keys",
        description="The usable keys (not revoked) within the credentials' own power, newest "
        "first, with cursor pagination. Never the keys themselves.",
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    @extend_schema(
        operation_id="keys_create",
        tags=TAG,
        request=KeyCreateInputSerializer,
        responses={201: KeyCreatedSerializer, **errors(400, 413, 415, 422)},
        summary="Create an API key",
        description="Answers the key once (`key`); it is stored hashed. A key limited to "
        "`sessions` also reaches the sessions it creates. Credentials that are themselves "
        "limited may make only a key within their limits (name its `sessions` and `scopes`): "
        "403 `forbidden_scope` otherwise, and it expires no later than they do. 422 for an "
        "`expires_at` in the past.",
    )
    def post(self, request: Request) -> Response:
        data = KeyCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        sessions = values.get("sessions")
        scopes = values.get("scopes")
        sessions = None if sessions is None else normal_sessions([str(s) for s in sessions])
        scopes = None if scopes is None else normal_scopes(scopes)
        expires_at = values.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise InvalidValue(
                "`expires_at` is in the past.", details={"expires_at": ["Must be in the future."]}
            )
        client = client_of(request)
        if client is not None:
            if not client.covers(sessions=sessions, scopes=scopes):
                raise ForbiddenScope(
                    message="A key may not have more power than the credentials making it: "
                    "name `sessions` and `scopes` within your own."
                )
            if client.expires_at is not None:
                if expires_at is not None and expires_at > client.expires_at:
                    raise ForbiddenScope(
                        message="A key may not outlive the key making it (`expires_at`)."
                    )
                expires_at = expires_at or client.expires_at
        api_key, key = ScopedAPIKey.objects.create_key(
            name=values["name"], sessions=sessions, scopes=scopes, expiry_date=expires_at
        )
        return Response(
            {**key_out(api_key), "key": key},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class KeyDetailApi(_KeysApi, ApiView):
    def _key(self, request: Request, key_id: str) -> APIKey:
        key = keys_visible(client_of(request)).filter(prefix=key_id).first()
        if key is None:
            raise NotFound()
        return key

    @extend_schema(
        operation_id="keys_retrieve",
        tags=TAG,
        parameters=[KEY_ID],
        responses={200: KeyOutputSerializer, **errors(400, 404)},
        summary="Get an API key",
        description="Without the key itself. 404 for a revoked key, and for one beyond the "
        "credentials' power.",
    )
    def get(self, request: Request, key_id: str) -> Response:
        return Response(key_out(self._key(request, key_id)))

    @extend_schema(
        operation_id="keys_revoke",
        tags=TAG,
        parameters=[KEY_ID],
        responses={204: None, **errors(400, 404)},
        summary="Revoke an API key",
        description="For good: it stops working at once (a key may revoke itself).",
    )
    def delete(self, request: Request, key_id: str) -> Response:
        key = self._key(request, key_id)
        key.revoked = True
        key.save(update_fields=["revoked"])
        return Response(status=status.HTTP_204_NO_CONTENT)
