"""`/metrics`: django-prometheus's request and database metrics plus the fleet's gauges.

The gauges are computed when scraped, one cheap query each, so every web process reports the same
numbers (they come from the database, not from process memory).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.core.errors import error_body

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
        yield _silence_family({})
        yield from _webhook_families({})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from gateway.outbox.models import DeliveryStatus, WebhookDelivery
        from messaging.models import Message
        from messaging.states import MessageStatus
        from sessions_app.models import Session
        from sessions_app.states import SessionStatus
        from workers.models import Worker
        from workers.states import WorkerStatus

        try:
            sessions = _by_status(Session, SessionStatus)
            workers = _by_status(Worker, WorkerStatus)
            queued = Message.objects.filter(status=MessageStatus.QUEUED).count()
            backlog = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()
            webhook = _webhook_figures(WebhookDelivery, DeliveryStatus)
            last_events = _last_events(Worker, WorkerStatus)
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
        yield _silence_family(last_events)
        yield from _webhook_families(webhook)


def fleet_figures() -> dict:
    """What the admin's fleet page shows, from the same queries as the collector: the running
    workers and those that died in the last hour."""
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    from gateway.outbox.models import DeliveryStatus, WebhookDelivery
    from sessions_app.models import Session
    from sessions_app.states import SessionStatus
    from workers.models import Worker
    from workers.states import WorkerStatus

    now = timezone.now()
    held = dict(
        Session.objects.filter(worker__isnull=False)
        .order_by()
        .values_list("worker")
        .annotate(n=Count("pk"))
    )
    workers = [
        {
            "name": w.name,
            "status": w.status,
            "sessions": held.get(w.pk, 0),
            "capacity": w.capacity,
            "heartbeat_age_seconds": round((now - w.last_heartbeat_at).total_seconds(), 1),
        }
        for w in Worker.objects.filter(
            Q(status__in=[WorkerStatus.ACTIVE, WorkerStatus.DRAINING])
            | Q(status=WorkerStatus.DEAD, stopped_at__gte=now - timedelta(hours=1))
        ).order_by("name")
    ]
    return {
        "sessions": _by_status(Session, SessionStatus),
        "worker_list": workers,
        "webhook_backlog": WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count(),
        "webhook": _webhook_figures(WebhookDelivery, DeliveryStatus),
    }


def _last_events(model, statuses) -> dict[str, float]:
    """Each connected session's last event (Unix time), from its worker's last heartbeat."""
    live = model.objects.filter(status__in=[statuses.ACTIVE, statuses.DRAINING])
    last: dict[str, float] = {}
    for stats in live.values_list("stats", flat=True):
        last.update((stats or {}).get("last_event_at", {}))
    return last


def _silence_family(last_events: dict[str, float]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "gateway_session_last_event_age_seconds",
        "Seconds since each connected session's last event (a zombie grows old here; "
        "SESSION_SILENCE_SECONDS probes it).",
        labels=["session_id"],
    )
    now = time.time()
    for session_id, at in sorted(last_events.items()):
        gauge.add_metric([session_id], max(0.0, now - at))
    return gauge


def _webhook_figures(model, statuses) -> dict:
    """Webhook health from the outbox itself (every process delivers; the database sees all)."""
    from datetime import timedelta

    from django.db.models import Avg, DurationField, ExpressionWrapper, F, Min, Q, Sum
    from django.utils import timezone

    from gateway.outbox.breaker import pending_circuits

    now = timezone.now()
    totals = model.objects.aggregate(
        attempts=Sum("attempts"),
        delivered=Count("pk", filter=Q(status=statuses.DELIVERED)),
        oldest=Min("created_at", filter=Q(status=statuses.PENDING)),
        latency=Avg(
            ExpressionWrapper(F("delivered_at") - F("created_at"), output_field=DurationField()),
            filter=Q(delivered_at__gte=now - timedelta(minutes=5)),
        ),
    )
    return {
        "by_status": _by_status(model, statuses),
        "attempts": totals["attempts"] or 0,
        "failed": (totals["attempts"] or 0) - totals["delivered"],
        "oldest": (now - totals["oldest"]).total_seconds() if totals["oldest"] else 0,
        "latency": totals["latency"].total_seconds() if totals["latency"] else 0,
        "breakers": pending_circuits(),
    }


def _webhook_families(figures: dict) -> Iterator[GaugeMetricFamily]:
    by_status = GaugeMetricFamily(
        "gateway_webhook_deliveries", "Webhook deliveries by status.", labels=["status"]
    )
    for status, count in figures.get("by_status", {}).items():
        by_status.add_metric([status], count)
    yield by_status
    for name, help_text, key in [
        ("gateway_webhook_attempts", "Delivery attempts made, all deliveries.", "attempts"),
        ("gateway_webhook_failed_attempts", "Attempts that did not deliver.", "failed"),
        ("gateway_webhook_oldest_pending_seconds", "Age of the oldest pending delivery.", "oldest"),
        (
            "gateway_webhook_latency_seconds",
            "Mean time from the change to its delivery, over the last 5 minutes.",
            "latency",
        ),
    ]:
        yield GaugeMetricFamily(name, help_text, value=figures.get(key, 0))
    circuit = GaugeMetricFamily(
        "gateway_webhook_circuit_open",
        "1 while a target's circuit breaker is open (0.5 half-open, waiting for a probe).",
        labels=["target"],
    )
    for target, state in figures.get("breakers", {}).items():
        circuit.add_metric([target], {"closed": 0, "half_open": 0.5, "open": 1}[state])
    yield circuit


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
