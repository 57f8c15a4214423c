from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

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
