from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.openapi import errors
from workers import selectors
from workers.models import Worker
from workers.serializers import WorkerFilterSerializer, WorkerOutputSerializer

TAG = ["workers"]


class WorkerListApi(generics.ListAPIView):
    serializer_class = WorkerOutputSerializer

    def get_queryset(self) -> QuerySet[Worker]:
        filters = WorkerFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.worker_list(filters=filters.validated_data)

    @extend_schema(
        operation_id="workers_list",
        tags=TAG,
        parameters=[WorkerFilterSerializer],
        responses={200: WorkerOutputSerializer(many=True), **errors(400)},
        summary="List workers",
    )
    def get(self, request: Request) -> Response:
        return super().get(request)


class WorkerDetailApi(APIView):
    @extend_schema(
        operation_id="workers_retrieve",
        tags=TAG,
        responses={200: WorkerOutputSerializer, **errors(404)},
        summary="Get a worker",
    )
    def get(self, request: Request, worker_id: uuid.UUID) -> Response:
        return Response(WorkerOutputSerializer(selectors.worker_get(worker_id=worker_id)).data)
