"""The fleet at a glance: the admin home's live charts (templates/admin/index.html and
gateway/static/gateway/admin-fleet.js poll `admin/fleet.json`).

The figures are the ones `/metrics` exports (gateway/metrics.py computes both), plus the messages
of each of the last 60 minutes, counted in the messages table by when they were accepted
(outbound, by the status they reached) or received (inbound).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from gateway import metrics

MINUTES = 60


def messages_per_minute(now=None) -> dict[str, list[int]]:
    """Messages sent, received and failed in each of the last `MINUTES` minutes, oldest first
    (the current minute last)."""
    from messaging.models import Message
    from messaging.states import Direction, MessageStatus

    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=MINUTES - 1)
    series = {"sent": [0] * MINUTES, "received": [0] * MINUTES, "failed": [0] * MINUTES}
    rows = (
        Message.objects.filter(created_at__gte=start, history=False)
        .annotate(minute=TruncMinute("created_at"))
        .values("minute", "direction", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        index = int((row["minute"] - start).total_seconds() // 60)
        if not 0 <= index < MINUTES:
            continue
        if row["direction"] == Direction.IN:
            series["received"][index] += row["n"]
        elif row["status"] == MessageStatus.FAILED:
            series["failed"][index] += row["n"]
        elif row["status"] not in (MessageStatus.QUEUED, MessageStatus.SENDING):
            series["sent"][index] += row["n"]
    return series


def fleet() -> dict:
    now = timezone.now()
    figures = metrics.fleet_figures()
    return {
        "at": now.isoformat(),
        "sessions": figures["sessions"],
        "workers": figures["worker_list"],
        "messages_per_minute": messages_per_minute(now),
        "webhooks": {
            "backlog": figures["webhook_backlog"],
            "oldest_pending_seconds": round(figures["webhook"]["oldest"], 1),
        },
        "circuits": figures["webhook"]["breakers"],
    }


@require_GET
@staff_member_required
def fleet_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(fleet())
