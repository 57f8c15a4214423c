"""`/metrics`: django-prometheus's request and database metrics plus the fleet's figures.

The figures are computed when scraped (`fleet_figures`, one cheap query each), so every web
process reports the same numbers: they come from the database, not from process memory. What only
a worker's process can count (failovers, engine host restarts, snapshot failures, messages by
outcome) arrives there with its heartbeat (`Worker.stats["counters"]`) and is shown per live
worker as counters: they start again from 0 with the worker's process, which `rate()` allows for.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.core.errors import error_body

logger = logging.getLogger(__name__)


def _by_status(model, choices) -> dict[str, int]:
    counts = {value: 0 for value in choices.values}
    for row in model.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    return counts


# What a worker's heartbeat counts (`stats["counters"]`, since its process started) → the
# labels of gateway_messages_total.
MESSAGE_COUNTERS = {
    "messages_sent": ("out", "sent"),
    "messages_delivered": ("out", "delivered"),
    "messages_read": ("out", "read"),
    "messages_failed": ("out", "failed"),
    "messages_received": ("in", "received"),
}
# Sessions waiting for a person to scan a QR code or type a pairing code.
LINKING = ("scan_qr", "pairing")


def fleet_figures() -> dict[str, Any]:
    """Every figure /metrics exports, as plain data (one query each; the admin home shows them):

    - `sessions`, `workers`: counts by status; `messages_queued`, `webhook_backlog`;
    - `linking_oldest`: seconds the longest-linking session has been showing a QR or pairing code;
    - `last_event_age`: {session id: seconds since its last event}, each connected session;
    - `webhook`: the outbox's figures (`_webhook_figures`);
    - `worker_list`: the live workers and those that died in the last hour (only the live ones are
      exported), each with its `name`, `worker` (the name, told apart when two live workers share
      one), `id`, `status`, `capacity`, `heartbeat_age_seconds`, the `sessions` it holds and
      `sessions_by_status`, its process's `counters` (`failovers`, `engine_host_restarts`,
      `snapshot_failures`, `messages_sent`, …: since that process started), and of its connected
      sessions whose auth state changed since their newest snapshot, the age of the oldest such
      snapshot (`snapshot_age_seconds`, 0: none waits) and how many are older than two snapshot
      periods (`snapshots_stale`).
    """
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    from gateway.outbox.models import DeliveryStatus, WebhookDelivery
    from messaging.models import Message
    from messaging.states import MessageStatus
    from sessions_app.models import Session
    from sessions_app.states import SessionStatus
    from workers.models import Worker
    from workers.states import WorkerStatus

    now = timezone.now()
    sessions = {value: 0 for value in SessionStatus.values}
    held: dict[Any, dict[str, int]] = {}
    linking_since = None
    rows = Session.objects.order_by().values("worker_id", "status")
    for row in rows.annotate(n=Count("pk"), since=Min("status_changed_at")):
        sessions[row["status"]] = sessions.get(row["status"], 0) + row["n"]
        if row["worker_id"] is not None:
            held.setdefault(row["worker_id"], {})[row["status"]] = row["n"]
        if row["status"] in LINKING and row["since"] is not None:
            linking_since = min(linking_since or row["since"], row["since"])
    webhook = _webhook_figures(WebhookDelivery, DeliveryStatus)
    figures: dict[str, Any] = {
        "sessions": sessions,
        "linking_oldest": (now - linking_since).total_seconds() if linking_since else 0.0,
        "workers": _by_status(Worker, WorkerStatus),
        "messages_queued": Message.objects.filter(status=MessageStatus.QUEUED).count(),
        "webhook_backlog": webhook["by_status"][DeliveryStatus.PENDING],
        "webhook": webhook,
    }
    live = [WorkerStatus.ACTIVE, WorkerStatus.DRAINING]
    workers = list(
        Worker.objects.filter(
            Q(status__in=live)
            | Q(status=WorkerStatus.DEAD, stopped_at__gte=now - timedelta(hours=1))
        )
        .order_by("name", "started_at")
        .values("id", "name", "status", "capacity", "last_heartbeat_at", "stats")
    )
    names = Counter(worker["name"] for worker in workers if worker["status"] in live)
    worker_list, last_event_age, wall = [], {}, time.time()
    for worker in workers:
        stats = worker["stats"] or {}
        if worker["status"] in live:
            for session_id, at in stats.get("last_event_at", {}).items():
                last_event_age[session_id] = max(0.0, wall - at)
        label = worker["name"]
        if names[label] > 1:  # two live workers of one name (one host, no --name): told apart
            label = f"{label} ({str(worker['id'])[:8]})"
        mine = held.get(worker["id"], {})
        age = max(0.0, (now - worker["last_heartbeat_at"]).total_seconds())
        snapshots = stats.get("snapshots", {})
        oldest = snapshots.get("oldest")
        worker_list.append(
            {
                "name": worker["name"],
                "worker": label,
                "id": str(worker["id"]),
                "status": worker["status"],
                "capacity": worker["capacity"],
                "heartbeat_age_seconds": round(age, 1),
                "sessions": sum(mine.values()),
                "sessions_by_status": {value: mine.get(value, 0) for value in SessionStatus.values},
                "counters": stats.get("counters", {}),
                "snapshot_age_seconds": round(max(0.0, wall - oldest), 1) if oldest else 0.0,
                "snapshots_stale": snapshots.get("stale", 0),
            }
        )
    figures["worker_list"], figures["last_event_age"] = worker_list, last_event_age
    return figures


class FleetCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        # Lets the registry learn the names without querying the database at start-up.
        yield from _families({})

    def collect(self) -> Iterator[Metric]:
        try:
            figures = fleet_figures()
        except Exception:
            logger.warning("fleet metrics unavailable", exc_info=True)
            return
        yield from _families(figures)


def _labelled(name: str, help_text: str, labels: list[str], samples, kind=GaugeMetricFamily):
    family = kind(name, help_text, labels=labels)
    for label_values, value in samples:
        family.add_metric(label_values, value)
    return family


def _by_label(name: str, help_text: str, label: str, values: dict[str, float]) -> Metric:
    return _labelled(name, help_text, [label], (([k], v) for k, v in values.items()))


def _families(figures: dict[str, Any]) -> Iterator[Metric]:
    yield _by_label(
        "gateway_sessions", "Sessions by status.", "status", figures.get("sessions", {})
    )
    yield _by_label("gateway_workers", "Workers by status.", "status", figures.get("workers", {}))
    for name, help_text, key in [
        ("gateway_messages_queued", "Outbound messages waiting to be sent.", "messages_queued"),
        ("gateway_webhook_backlog", "Webhook deliveries pending.", "webhook_backlog"),
        (
            "gateway_sessions_linking_oldest_seconds",
            "Seconds the longest-linking session (scan_qr or pairing) has been in that status; "
            "0 when none is linking.",
            "linking_oldest",
        ),
    ]:
        yield GaugeMetricFamily(name, help_text, value=figures.get(key, 0))
    yield _by_label(
        "gateway_session_last_event_age_seconds",
        "Seconds since each connected session's last event (a zombie grows old here; "
        "SESSION_SILENCE_SECONDS probes it).",
        "session_id",
        dict(sorted(figures.get("last_event_age", {}).items())),
    )
    yield from _webhook_families(figures.get("webhook", {}))
    from workers.states import WorkerStatus

    # The workers that died in the last hour are for the admin's eyes only.
    live = (WorkerStatus.ACTIVE, WorkerStatus.DRAINING)
    yield from _worker_families([w for w in figures.get("worker_list", []) if w["status"] in live])


# Per live worker, from its row: (name, help, the figure).
WORKER_GAUGES = [
    ("gateway_worker_capacity", "Sessions each live worker may hold.", "capacity"),
    (
        "gateway_worker_heartbeat_age_seconds",
        "Seconds since each live worker's last heartbeat (others declare it dead after "
        "WORKER_LEASE_SECONDS).",
        "heartbeat_age_seconds",
    ),
    (
        "gateway_worker_snapshot_age_seconds",
        "Of each live worker's connected sessions whose auth state changed since their newest "
        "snapshot, the age of the oldest such snapshot (0: none waits): grows while snapshots "
        "fail. Sessions with nothing new to snapshot are left out.",
        "snapshot_age_seconds",
    ),
    (
        "gateway_worker_snapshots_stale",
        "Connected sessions of each live worker whose changed auth state has waited over two "
        "SNAPSHOT_INTERVAL_SECONDS for a snapshot.",
        "snapshots_stale",
    ),
]
# Per live worker, from its process's counters (`counters` of its heartbeat).
WORKER_COUNTERS = [
    (
        "gateway_failovers_total",
        "Sessions each live worker took over from a worker whose lease had run out.",
        "failovers",
    ),
    (
        "gateway_engine_host_restarts_total",
        "Engine host processes that died under each live worker and were replaced.",
        "engine_host_restarts",
    ),
    (
        "gateway_snapshot_failures_total",
        "Auth snapshots each live worker could not store (tried again each period).",
        "snapshot_failures",
    ),
]


def _worker_families(fleet: list[dict[str, Any]]) -> Iterator[Metric]:
    yield _labelled(
        "gateway_worker_sessions",
        "Sessions each live worker holds, by status.",
        ["worker", "status"],
        (
            ([w["worker"], status], n)
            for w in fleet
            for status, n in w["sessions_by_status"].items()
        ),
    )
    for name, help_text, key in WORKER_GAUGES:
        yield _by_label(name, help_text, "worker", {w["worker"]: w[key] for w in fleet})
    for name, help_text, key in WORKER_COUNTERS:
        counts = (([w["worker"]], w["counters"].get(key, 0)) for w in fleet)
        yield _labelled(name, help_text, ["worker"], counts, kind=CounterMetricFamily)
    yield _labelled(
        "gateway_messages_total",
        "Messages by direction and outcome (out: sent, delivered, read, failed; in: received), "
        "as each live worker's process counted them since it started.",
        ["worker", "direction", "outcome"],
        (
            ([w["worker"], *labels], w["counters"].get(key, 0))
            for w in fleet
            for key, labels in MESSAGE_COUNTERS.items()
        ),
        kind=CounterMetricFamily,
    )
    latency = SummaryMetricFamily(
        "gateway_message_send_latency_seconds",
        "Time from a message's acceptance by the API to WhatsApp's sent, as each live worker's "
        "process measured it since it started (the mean: rate of _sum over rate of _count).",
        labels=["worker"],
    )
    for w in fleet:
        latency.add_metric(
            [w["worker"]],
            count_value=w["counters"].get("send_latency_count", 0),
            sum_value=w["counters"].get("send_latency_seconds", 0),
        )
    yield latency


def _webhook_figures(model, statuses) -> dict:
    """Webhook health from the outbox itself (every process delivers; the database sees all)."""
    from datetime import timedelta

    from django.db.models import Avg, DurationField, ExpressionWrapper, F, Q, Sum
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


def _webhook_families(figures: dict) -> Iterator[Metric]:
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
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # gunicorn's processes' request counters, summed from their files, and the fleet's
        # figures (from the database: whole in any process), which django-prometheus's own
        # view would leave out in this mode.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(_collector)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
