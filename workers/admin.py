from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from gateway.core.admin import LiveMedia, ago, badge
from workers import services
from workers.models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status_badge",
        "hostname",
        "pid",
        "load",
        "heartbeat",
        "version",
        "started_at",
    ]
    Media = LiveMedia
    list_filter = ["status", "hostname"]
    search_fields = ["id", "name", "hostname"]
    readonly_fields = [
        "id",
        "name",
        "hostname",
        "pid",
        "version",
        "engines",
        "capacity",
        "backend_id",
        "stats",
        "started_at",
        "last_heartbeat_at",
        "stopped_at",
        "created_at",
    ]
    fields = ["status", *readonly_fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        return super().get_queryset(request).annotate(session_count=Count("sessions"))

    @admin.display(description="status", ordering="status")
    def status_badge(self, worker: Worker):
        return badge(worker.status)

    @admin.display(description="load", ordering="session_count")
    def load(self, worker: Worker):
        """Sessions held against capacity."""
        held: int = getattr(worker, "session_count", 0)  # annotated by get_queryset
        share = 100 * held / worker.capacity if worker.capacity else 0
        return format_html(
            '{} / {} <span class="gw-live">({}%)</span>',
            held,
            worker.capacity,
            round(share),
        )

    @admin.display(description="heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, worker: Worker):
        """Age of the last heartbeat; red once older than the lease TTL (a live worker beats
        every TTL/3, so it is then about to be marked dead)."""
        alive = worker.status in ("active", "draining")
        return ago(worker.last_heartbeat_at, stale_after=settings.WORKER_LEASE_SECONDS * alive)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    actions = ["drain_workers"]

    @admin.action(
        description="Drain selected workers (hand their sessions to others)", permissions=["change"]
    )
    def drain_workers(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        for worker in queryset:
            services.worker_drain(worker=worker)
        self.message_user(request, f"Draining {queryset.count()} worker(s).", messages.SUCCESS)
