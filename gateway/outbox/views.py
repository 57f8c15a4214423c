"""`/api/v1/webhooks`: webhook and broker endpoints, their secrets, test events and deliveries."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.core.api import ApiView, ListApiView
from gateway.core.errors import ForbiddenScope, NotFound
from gateway.core.openapi import errors
from gateway.core.scopes import client_of
from gateway.outbox import deliveries, endpoints
from gateway.outbox.models import Endpoint, WebhookDelivery
from gateway.outbox.serializers import (
    DeliveryFilterSerializer,
    DeliveryOutputSerializer,
    EndpointInputSerializer,
    EndpointOutputSerializer,
    EndpointSecretSerializer,
    ReplayInputSerializer,
    ReplayOutputSerializer,
    RotateInputSerializer,
    TestOutputSerializer,
)

TAG = ["webhooks"]


class EndpointNotFound(NotFound):
    code = "webhook_not_found"
    message = "No such webhook endpoint."


def visible_endpoints(request: Request) -> QuerySet[Endpoint]:
    """The endpoints the caller may manage: for credentials limited to some sessions
    (gateway/core/scopes.py), those that name sessions, all of them theirs. Not one that names
    none (`[]`, refused since, but a row may hold it): the empty set is within every tenant's
    sessions, so that would be every limited key's endpoint."""
    rows = Endpoint.objects.all()
    client = client_of(request)
    if client is None or client.all_sessions:
        return rows
    visible = client.visible_ids() or frozenset()
    mine = [pk for pk, ids in rows.values_list("pk", "sessions") if ids and set(ids) <= visible]
    return rows.filter(pk__in=mine)


def check_sessions(request: Request, sessions: list[str] | None) -> None:
    """Credentials limited to some sessions name only theirs: another's is as unknown as one that
    does not exist (422 `session_not_found`), and every session (null) is beyond them (403)."""
    client = client_of(request)
    if client is None or client.all_sessions:
        return
    if sessions is None:
        raise ForbiddenScope(
            message="These credentials are limited to some sessions: name them in `sessions`."
        )
    hidden = [session for session in sessions if not client.may_see(session)]
    if hidden:
        raise endpoints.EndpointInvalid(
            f"No such session: {', '.join(hidden)}.", code="session_not_found"
        )


class _Managed:
    """Endpoints are managed with the `manage` scope (gateway/core/scopes.py)."""

    required_scope = "manage"


def endpoint_get(request: Request, endpoint_id: uuid.UUID) -> Endpoint:
    endpoint = visible_endpoints(request).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise EndpointNotFound()
    return endpoint


class EndpointListCreateApi(_Managed, ListApiView):
    serializer_class = EndpointOutputSerializer

    def get_queryset(self) -> QuerySet[Endpoint]:
        return visible_endpoints(self.request)

    @extend_schema(
        operation_id="webhooks_list",
        tags=TAG,
        responses={200: EndpointOutputSerializer(many=True), **errors(400, 422)},
        summary="List webhook endpoints",
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    @extend_schema(
        operation_id="webhooks_create",
        tags=TAG,
        request=EndpointInputSerializer,
        responses={201: EndpointSecretSerializer, **errors(400, 422)},
        summary="Create a webhook endpoint",
        description="A webhook (http/https) or a broker (nats://, amqp://) that gets the events "
        "matching `events` of the sessions in `sessions` (all when omitted), each signed with "
        "the endpoint's own Standard Webhooks secret, which this answer shows once.",
    )
    def post(self, request: Request) -> Response:
        body = EndpointInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        check_sessions(request, body.validated_data["sessions"])
        endpoint = endpoints.endpoint_create(**body.validated_data)
        return Response(EndpointSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailApi(_Managed, ApiView):
    @extend_schema(
        operation_id="webhooks_retrieve",
        tags=TAG,
        responses={200: EndpointOutputSerializer, **errors(404)},
        summary="Get a webhook endpoint",
    )
    def get(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        return Response(EndpointOutputSerializer(endpoint_get(request, endpoint_id)).data)

    @extend_schema(
        operation_id="webhooks_update",
        tags=TAG,
        request=EndpointInputSerializer(partial=True),
        responses={200: EndpointOutputSerializer, **errors(400, 404, 422)},
        summary="Change a webhook endpoint",
        description="Any of the fields; `enabled: true` turns an endpoint disabled by a 410 back "
        "on (replay its dead deliveries with `…/deliveries/replay`). The secret changes only "
        "through `rotate-secret`.",
    )
    def patch(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint = endpoint_get(request, endpoint_id)
        body = EndpointInputSerializer(endpoint, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        if "sessions" in body.validated_data:
            check_sessions(request, body.validated_data["sessions"])
        fields = {k: v for k, v in body.validated_data.items() if k != "secret"}
        endpoint = endpoints.endpoint_update(endpoint, **fields)
        return Response(EndpointOutputSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhooks_destroy",
        tags=TAG,
        responses={204: None, **errors(404)},
        summary="Delete a webhook endpoint",
        description="With its deliveries, pending ones included.",
    )
    def delete(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint_get(request, endpoint_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointTestApi(_Managed, ApiView):
    @extend_schema(
        operation_id="webhooks_test",
        tags=TAG,
        request=None,
        responses={202: TestOutputSerializer, **errors(404)},
        summary="Send a test event",
        description="A signed `webhook.test` event (`session` null) to this endpoint only, "
        "through the outbox: see it in `…/deliveries`.",
    )
    def post(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        body = endpoints.endpoint_test(endpoint_get(request, endpoint_id))
        return Response(
            {"event_id": body["id"], "event": body["event"]}, status=status.HTTP_202_ACCEPTED
        )


class EndpointRotateApi(_Managed, ApiView):
    @extend_schema(
        operation_id="webhooks_rotate_secret",
        tags=TAG,
        request=RotateInputSerializer,
        responses={200: EndpointSecretSerializer, **errors(400, 404, 422)},
        summary="Rotate an endpoint's secret",
        description="A new secret (shown once, in this answer); the previous one keeps signing "
        "too (a second `v1,` signature) for `overlap_seconds`, so receivers can switch without "
        "refusing an event.",
    )
    def post(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint = endpoint_get(request, endpoint_id)
        body = RotateInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint = endpoints.endpoint_rotate_secret(endpoint, **body.validated_data)
        return Response(EndpointSecretSerializer(endpoint).data)


class EndpointDeliveriesApi(_Managed, ListApiView):
    serializer_class = DeliveryOutputSerializer

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        endpoint = endpoint_get(self.request, self.kwargs["endpoint_id"])
        filters = DeliveryFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        rows = WebhookDelivery.objects.filter(endpoint=endpoint)
        if filters.validated_data.get("status"):
            rows = rows.filter(status__in=filters.validated_data["status"])
        if filters.validated_data.get("event"):
            rows = rows.filter(event_type=filters.validated_data["event"])
        if filters.validated_data.get("session"):
            rows = rows.filter(session_id=filters.validated_data["session"])
        return rows

    @extend_schema(
        operation_id="webhooks_deliveries",
        tags=TAG,
        parameters=[DeliveryFilterSerializer],
        responses={200: DeliveryOutputSerializer(many=True), **errors(400, 404, 422)},
        summary="List an endpoint's deliveries",
    )
    def get(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        return super().get(request)


class EndpointReplayApi(_Managed, ApiView):
    @extend_schema(
        operation_id="webhooks_replay",
        tags=TAG,
        request=ReplayInputSerializer,
        responses={202: ReplayOutputSerializer, **errors(400, 404)},
        summary="Deliver again",
        description="The deliveries in `ids`, or every one of this endpoint with `status` "
        "(dead by default), again with the same event id, in order per session.",
    )
    def post(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint = endpoint_get(request, endpoint_id)
        body = ReplayInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rows = WebhookDelivery.objects.filter(endpoint=endpoint)
        if "ids" in body.validated_data:
            rows = rows.filter(pk__in=body.validated_data["ids"])
        else:
            rows = rows.filter(status=body.validated_data["status"])
        count = deliveries.deliveries_replay(ids=list(rows.values_list("pk", flat=True)))
        return Response({"replayed": count}, status=status.HTTP_202_ACCEPTED)
