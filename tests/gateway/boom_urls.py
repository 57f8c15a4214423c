"""The real URLs plus views that fail on purpose, to see how failures are shaped."""

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.urls import urlpatterns as real


class BoomApi(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug")


def plain_boom(request):
    raise RuntimeError("a bug outside DRF")


urlpatterns = [
    path("api/v1/boom", BoomApi.as_view()),
    path("api/v1/plain-boom", plain_boom),
    *real,
]
handler500 = "gateway.core.errors.handler500"
handler404 = "gateway.core.errors.handler404"
