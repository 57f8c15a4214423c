from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from workers import services
from workers.models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "hostname",
        "pid",
        "session_count",
        "capacity",
        "last_heartbeat_at",
        "version",
        "started_at",
    ]
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

    @admin.display(ordering="session_count", description="sessions")
    def session_count(self, worker: Worker) -> int:
        return worker.session_count

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
