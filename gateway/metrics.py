"""`/metrics`: django-prometheus's request and database metrics plus the fleet's gauges.

The gauges are computed when scraped, one cheap query each, so every web process reports the same
numbers (they come from the database, not from process memory).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.errors import error_body

logger = logging.getLogger(__name__)


def _by_status(model, choices) -> dict[str, int]:
    counts = {value: 0 for value in choices.values}
    for row in model.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    return counts


class FleetCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Lets the registry learn the names without querying the database at start-up.
        yield GaugeMetricFamily("gateway_sessions", "Sessions by status.", labels=["status"])
        yield GaugeMetricFamily("gateway_workers", "Workers by status.", labels=["status"])
        yield GaugeMetricFamily("gateway_messages_queued", "Outbound messages waiting to be sent.")
        yield GaugeMetricFamily("gateway_webhook_backlog", "Webhook deliveries pending.")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from gateway.models import DeliveryStatus, WebhookDelivery
        from messaging.models import Message, MessageStatus
        from sessions_app.models import Session, SessionStatus
        from workers.models import Worker, WorkerStatus

        try:
            sessions = _by_status(Session, SessionStatus)
            workers = _by_status(Worker, WorkerStatus)
            queued = Message.objects.filter(status=MessageStatus.QUEUED).count()
            backlog = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()
        except Exception:
            logger.warning("fleet metrics unavailable", exc_info=True)
            return
        gauge = GaugeMetricFamily("gateway_sessions", "Sessions by status.", labels=["status"])
        for status, count in sessions.items():
            gauge.add_metric([status], count)
        yield gauge
        gauge = GaugeMetricFamily("gateway_workers", "Workers by status.", labels=["status"])
        for status, count in workers.items():
            gauge.add_metric([status], count)
        yield gauge
        yield GaugeMetricFamily(
            "gateway_messages_queued", "Outbound messages waiting to be sent.", value=queued
        )
        yield GaugeMetricFamily(
            "gateway_webhook_backlog", "Webhook deliveries pending.", value=backlog
        )


_collector = FleetCollector()


def register() -> None:
    if _collector not in REGISTRY._collector_to_names:  # ready() may run twice in some test setups
        REGISTRY.register(_collector)


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    keyword, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and keyword.lower() == "bearer" and constant_time_compare(given.strip(), token):
        return True
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False  # came through a proxy on this host: the real caller is elsewhere
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text, for loopback callers and for `Authorization: Bearer METRICS_TOKEN`."""
    if not _allowed(request):
        return JsonResponse(
            error_body(
                "permission_denied",
                "Metrics are served to loopback and to the METRICS_TOKEN bearer only.",
            ),
            status=403,
        )
    return ExportToDjangoView(request)
