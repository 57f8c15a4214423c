"""Usage: how much each session did, counted as it happens, per hour (UTC). The one door to the
counters (`UsageCounter`) and to the claims of the daily reports (`UsageReport`).

- `usage_add(session_id, kind=…, messages_sent=1, …)`: add to this hour's counters, in the
  transaction that made what is counted (so a rollback counts nothing). One statement, an
  `INSERT … ON CONFLICT DO UPDATE SET count = count + n` (PostgreSQL and SQLite alike).
- `usage_periods(…)`: the figures per session and hour or day, summed in SQL from the counters
  (never a scan of the messages), in the shape the API and the `usage.report` event show.
- `usage_days_active(…)`, `usage_report_claim(…)`: which sessions had activity on which days, and
  the once-only claim of a day's report.

What is counted where: messaging's services count messages (sent, delivered, read, failed per
message type; received; media bytes), the webhook outbox counts deliveries.

Each process also keeps a running total of what it counted (`tally`, once committed): a worker's
heartbeat carries its totals to `/metrics` as counters (they start again from 0 with the process,
which Prometheus counters may; the hourly rows cannot serve as counters, a deleted session takes
its rows with it).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncDay
from django.utils import timezone

from gateway.core.models import UsageCounter, UsageReport

# Every figure, and where it shows in a period's answer: (section, field). Message figures are
# also shown per message type (`messages.by_type`).
METRICS: dict[str, tuple[str, str]] = {
    "messages_sent": ("messages", "sent"),
    "messages_delivered": ("messages", "delivered"),
    "messages_read": ("messages", "read"),
    "messages_failed": ("messages", "failed"),
    "messages_received": ("messages", "received"),
    "media_bytes_sent": ("media_bytes", "sent"),
    "media_bytes_received": ("media_bytes", "received"),
    "webhooks_delivered": ("webhooks", "delivered"),
    "webhooks_failed": ("webhooks", "failed"),
}
# What makes a day worth a `usage.report`: messages, not the webhooks (a report's own delivery
# must not make the next day active).
ACTIVITY_METRICS = tuple(m for m in METRICS if not m.startswith("webhooks_"))
GRANULARITIES = ("hour", "day")
KIND_MAX = UsageCounter._meta.get_field("kind").max_length or 16


class Tally:
    """What this process counted since it started: figures added once the transaction that
    counted them commits (at once outside one). Thread-safe (the worker's database threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._figures: Counter[str] = Counter()

    def add(self, **figures: float) -> None:
        transaction.on_commit(lambda: self._add(figures))

    def _add(self, figures: dict[str, float]) -> None:
        with self._lock:
            self._figures.update(figures)

    def figures(self) -> dict[str, float]:
        with self._lock:
            return dict(self._figures)


tally = Tally()


def clock() -> datetime:
    """Now: the hour a figure is counted in (tests move it)."""
    return timezone.now()


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def period_floor(at: datetime, granularity: str) -> datetime:
    """The start of the hour or day (UTC) `at` lies in."""
    hour = hour_of(at)
    return hour.replace(hour=0) if granularity == "day" else hour


def period_ceil(at: datetime, granularity: str) -> datetime:
    """The end of the hour or day `at` lies in (`at` itself when it is a period's start)."""
    start = period_floor(at, granularity)
    if start == at:
        return start
    return start + (timedelta(days=1) if granularity == "day" else timedelta(hours=1))


def _db_value(model: type[models.Model], name: str, value: Any) -> Any:
    """`value` as the database takes it for `model.name` (a raw statement's parameter)."""
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field.get_db_prep_value(value, connection)


def usage_add(
    session_id: uuid.UUID, *, kind: str = "", at: datetime | None = None, **metrics: int
) -> None:
    """Add `metrics` (names from METRICS, counts ≥ 0) to the session's counters of the hour of
    `at` (now), for message type `kind` ("" for none). Call inside the transaction that made
    what is counted."""
    usage_add_many({session_id: metrics}, kind=kind, at=at)


def usage_add_many(
    figures: Mapping[uuid.UUID, Mapping[str, int]], *, kind: str = "", at: datetime | None = None
) -> None:
    """`usage_add` for many sessions at once: one statement whatever their number (the webhook
    outbox records a batch of deliveries so)."""
    rows: Counter[tuple[str, datetime, str, str]] = Counter()
    period, kind = hour_of(at or clock()), kind[:KIND_MAX]
    for session_id, metrics in figures.items():
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown usage metrics: {', '.join(sorted(unknown))}")
        if any(n < 0 for n in metrics.values()):
            raise ValueError("usage counts only grow")
        for metric, n in metrics.items():
            if n:
                rows[(str(session_id), period, metric, kind)] += n
    held = _held.get()
    if held is not None:
        held.update(rows)
    elif rows:
        _write(rows)


# What `usage_together` holds back.
_held: ContextVar[Counter[tuple[str, datetime, str, str]] | None] = ContextVar(
    "held_usage", default=None
)


@contextlib.contextmanager
def usage_together() -> Iterator[None]:
    """What is counted inside is written when it ends, in one statement (a run of receipts counts
    a step of each of its messages)."""
    if _held.get() is not None:  # inside one already: that one writes it
        yield
        return
    held: Counter[tuple[str, datetime, str, str]] = Counter()
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
    if held:
        _write(held)


def _write(counts: Counter[tuple[str, datetime, str, str]]) -> None:
    """Add `counts` ((session, hour, metric, kind) → n) to the counters."""
    rows = sorted((*key, n) for key, n in counts.items() if n)  # one lock order for all
    if not rows:
        return
    total: Counter[str] = Counter()
    for _, _, metric, _, n in rows:
        total[metric] += n
    tally.add(**total)
    if connection.vendor not in ("postgresql", "sqlite"):  # pragma: no cover - not deployed
        for session, period, metric, kind, n in rows:
            counter, _ = UsageCounter.objects.get_or_create(
                session_id=session, period_start=period, metric=metric, kind=kind
            )
            UsageCounter.objects.filter(pk=counter.pk).update(count=F("count") + n)
        return
    table = connection.ops.quote_name(UsageCounter._meta.db_table)
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for session, period, metric, kind, n in rows:
        params += [
            _db_value(UsageCounter, "session", uuid.UUID(session)),
            _db_value(UsageCounter, "period_start", period),
            metric,
            kind,
            n,
        ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (session_id, period_start, metric, kind, count) "  # noqa: S608
            f"VALUES {values} "
            "ON CONFLICT (session_id, period_start, metric, kind) "
            f"DO UPDATE SET count = {table}.count + excluded.count",
            params,
        )


def _blank(session_id: str, period: str) -> dict[str, Any]:
    return {
        "session": session_id,
        "period": period,
        "messages": {"sent": 0, "delivered": 0, "read": 0, "failed": 0, "received": 0},
        "media_bytes": {"sent": 0, "received": 0},
        "webhooks": {"delivered": 0, "failed": 0},
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def usage_periods(
    *,
    start: datetime,
    end: datetime,
    granularity: str,
    sessions: QuerySet[Any] | Iterable[uuid.UUID] | None = None,
) -> list[dict[str, Any]]:
    """Each session's figures per hour or day (UTC) from `start` (included) to `end` (excluded),
    both period boundaries; periods without any figure are left out. `sessions`: their ids (a
    queryset of sessions or ids), or None for every session. Ordered by period, then session."""
    counters = UsageCounter.objects.filter(period_start__gte=start, period_start__lt=end)
    if sessions is not None:
        counters = counters.filter(session_id__in=sessions)
    period = TruncDay("period_start", tzinfo=UTC) if granularity == "day" else F("period_start")
    rows = (
        counters.annotate(period=period)
        .values("period", "session_id", "metric", "kind")
        .annotate(total=Sum("count"))
        .order_by("period", "session_id", "metric", "kind")
    )
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (_iso(row["period"]), str(row["session_id"]))
        entry = results.get(key) or results.setdefault(key, _blank(key[1], key[0]))
        section, name = METRICS.get(row["metric"], ("", ""))
        if not section:
            continue  # a figure this version does not show
        entry[section][name] += row["total"]
        if section == "messages" and row["kind"]:
            by_type = entry["messages"].setdefault("by_type", {})
            counts = by_type.setdefault(
                row["kind"], {"sent": 0, "delivered": 0, "read": 0, "failed": 0, "received": 0}
            )
            counts[name] += row["total"]
    for entry in results.values():
        entry["messages"].setdefault("by_type", {})
    return list(results.values())


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def usage_days_active(*, first: date, last: date) -> list[tuple[uuid.UUID, date]]:
    """(session, day) for every day from `first` to `last` (UTC, included) on which the session
    had message activity and has no report yet."""
    reported = UsageReport.objects.filter(session_id=OuterRef("session_id"), day=OuterRef("day"))
    rows = (
        UsageCounter.objects.filter(
            period_start__gte=day_bounds(first)[0],
            period_start__lt=day_bounds(last)[1],
            metric__in=ACTIVITY_METRICS,
            count__gt=0,
        )
        .annotate(day=TruncDate("period_start", tzinfo=UTC))
        .annotate(reported=Exists(reported))
        .filter(reported=False)
        .values_list("session_id", "day")
        .distinct()
        .order_by("day", "session_id")
    )
    return list(rows)


def usage_report_claim(session_id: uuid.UUID, day: date) -> bool:
    """Claim the session's report of `day`: True for the one caller that did (its transaction
    must write the report); a concurrent claim waits for that transaction and gets False."""
    table = connection.ops.quote_name(UsageReport._meta.db_table)
    params = [
        _db_value(UsageReport, "session", session_id),
        _db_value(UsageReport, "day", day),
        _db_value(UsageReport, "created_at", timezone.now()),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (session_id, day, created_at) "  # noqa: S608
            "VALUES (%s, %s, %s) ON CONFLICT (session_id, day) DO NOTHING",
            params,
        )
        return cursor.rowcount == 1
