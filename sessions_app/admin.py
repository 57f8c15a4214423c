from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from sessions_app import services
from sessions_app.models import Session, SessionEvent


class SessionEventInline(admin.TabularInline):
    model = SessionEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "from_status", "to_status", "reason", "worker"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _bulk(service, verb: str):
    def action(modeladmin, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        for session in queryset:
            service(session=session)
        modeladmin.message_user(
            request, f"{verb} requested for {queryset.count()} session(s).", messages.SUCCESS
        )

    action.__name__ = f"{verb.lower()}_sessions"
    action.short_description = f"{verb} selected sessions"
    action.allowed_permissions = ("change",)
    return action


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status",
        "desired_state",
        "phone_number",
        "engine",
        "worker",
        "status_changed_at",
        "created_at",
    ]
    list_filter = ["status", "desired_state", "engine", "worker"]
    list_select_related = ["worker"]
    search_fields = ["id", "external_id", "name", "phone_number", "jid", "push_name"]
    readonly_fields = [
        "id",
        "status",
        "status_changed_at",
        "last_error_code",
        "last_error",
        "phone_number",
        "jid",
        "push_name",
        "linked_at",
        "worker",
        "lease_expires_at",
        "lease_epoch",
        "event_sequence",
        "restart_requested_at",
        "logout_requested_at",
        "delete_requested_at",
        "created_at",
        "updated_at",
    ]
    autocomplete_fields = ["target_worker"]
    fieldsets = [
        (None, {"fields": ["id", "external_id", "name", "engine", "metadata", "desired_state"]}),
        (
            "Status",
            {
                "fields": [
                    "status",
                    "status_changed_at",
                    "last_error_code",
                    "last_error",
                    "phone_number",
                    "jid",
                    "push_name",
                    "linked_at",
                ]
            },
        ),
        (
            "Requests",
            {"fields": ["restart_requested_at", "logout_requested_at", "delete_requested_at"]},
        ),
        (
            "Lease",
            {
                "fields": [
                    "worker",
                    "lease_expires_at",
                    "lease_epoch",
                    "target_worker",
                    "event_sequence",
                ]
            },
        ),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [SessionEventInline]

    def delete_model(self, request: HttpRequest, obj: Session) -> None:
        # Through the service: a running session is logged out by its worker first, and files go.
        if not services.session_delete(session=obj):
            self.message_user(
                request,
                f"{obj} is being logged out; it is deleted when its worker has done so.",
                messages.WARNING,
            )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        for session in queryset:
            self.delete_model(request, session)

    actions = [
        _bulk(services.session_request_start, "Start"),
        _bulk(services.session_request_stop, "Stop"),
        _bulk(services.session_request_restart, "Restart"),
        _bulk(services.session_request_logout, "Logout"),
        "migrate_sessions",
    ]

    @admin.action(description="Move selected sessions to another worker", permissions=["change"])
    def migrate_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        moved, stuck = 0, 0
        for session in queryset:
            try:
                services.session_request_migrate(session=session)
                moved += 1
            except (services.NoWorkerAvailable, services.SessionBeingDeleted):
                stuck += 1
        self.message_user(
            request,
            f"{moved} session(s) moving; {stuck} could not move (no "
            "other active worker runs their engine).",
            messages.SUCCESS if not stuck else messages.WARNING,
        )


@admin.register(SessionEvent)
class SessionEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "session", "from_status", "to_status", "reason", "worker"]
    list_filter = ["to_status", "from_status"]
    list_select_related = ["session", "worker"]
    search_fields = ["session__id", "session__external_id", "session__name", "reason"]
    readonly_fields = ["session", "from_status", "to_status", "reason", "worker", "created_at"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
