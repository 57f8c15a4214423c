from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.core.api import ApiView, ListApiView
from gateway.core.openapi import errors
from workers import selectors, services
from workers.models import Worker
from workers.serializers import WorkerFilterSerializer, WorkerOutputSerializer

TAG = ["workers"]


class _WorkersApi:
    """Workers serve every tenant: the `manage` scope, and credentials not limited to sessions
    (gateway/core/scopes.py)."""

    required_scope = "manage"
    gateway_wide = True


class WorkerListApi(_WorkersApi, ListApiView):
    serializer_class = WorkerOutputSerializer

    def get_queryset(self) -> QuerySet[Worker]:
        filters = WorkerFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.worker_list(filters=filters.validated_data)

    @extend_schema(
        operation_id="workers_list",
        tags=TAG,
        parameters=[WorkerFilterSerializer],
        responses={200: WorkerOutputSerializer(many=True), **errors(400, 422)},
        summary="List workers",
    )
    def get(self, request: Request) -> Response:
        return super().get(request)


class WorkerDetailApi(_WorkersApi, ApiView):
    @extend_schema(
        operation_id="workers_retrieve",
        tags=TAG,
        responses={200: WorkerOutputSerializer, **errors(404)},
        summary="Get a worker",
    )
    def get(self, request: Request, worker_id: uuid.UUID) -> Response:
        return Response(WorkerOutputSerializer(selectors.worker_get(worker_id=worker_id)).data)


class WorkerDrainApi(_WorkersApi, ApiView):
    @extend_schema(
        operation_id="workers_drain",
        tags=TAG,
        request=None,
        responses={202: WorkerOutputSerializer, **errors(404)},
        summary="Drain a worker",
        description="The worker takes no new sessions and hands each of its sessions over to "
        "other workers (disconnect, snapshot, release; they reconnect without a QR scan).",
    )
    def post(self, request: Request, worker_id: uuid.UUID) -> Response:
        worker = services.worker_drain(worker=selectors.worker_get(worker_id=worker_id))
        return Response(
            WorkerOutputSerializer(selectors.worker_get(worker_id=worker.pk)).data,
            status=status.HTTP_202_ACCEPTED,
        )
