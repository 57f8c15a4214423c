from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from gateway.core.admin import LiveMedia, ago, badge
from sessions_app import services
from sessions_app.link import pair_code_response
from sessions_app.models import Session, SessionEvent
from sessions_app.states import SessionStatus
from sessions_app.tokens import ws_token_make
from workers.models import Worker

TIMELINE_LENGTH = 50
LINKING = [SessionStatus.STARTING, SessionStatus.SCAN_QR, SessionStatus.PAIRING]
# What the worker reports and what was asked of it: shown in their fieldsets, never edited.
STATUS_FIELDS = (
    "status",
    "status_changed_at",
    "last_error_code",
    "last_error",
    "phone_number",
    "jid",
    "push_name",
    "linked_at",
    "groups_link",
)
REQUEST_FIELDS = ("restart_requested_at", "logout_requested_at", "delete_requested_at")


def _worker_names() -> dict[str, str]:
    """For the live script: a session's new worker_id shown by name."""
    return {str(pk): name for pk, name in Worker.objects.values_list("pk", "name")}


def _bulk(service, verb: str):
    def action(modeladmin, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        for session in queryset:
            service(session=session)
        modeladmin.message_user(
            request, f"{verb} requested for {queryset.count()} session(s).", messages.SUCCESS
        )

    action.__name__ = f"{verb.lower()}_sessions"
    return admin.action(description=f"{verb} selected sessions", permissions=["change"])(action)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status_badge",
        "desired_state",
        "phone",
        "engine",
        "worker_name",
        "last_change",
        "created_at",
    ]
    Media = LiveMedia
    list_filter = ["status", "desired_state", "engine", "worker"]
    list_select_related = ["worker"]
    search_fields = ["id", "external_id", "name", "phone_number", "jid", "push_name"]
    readonly_fields = [
        "id",
        *STATUS_FIELDS,
        "worker",
        "lease_expires_at",
        "lease_epoch",
        "event_sequence",
        *REQUEST_FIELDS,
        "created_at",
        "updated_at",
    ]
    autocomplete_fields = ["target_worker"]
    fieldsets = [
        (None, {"fields": ["id", "external_id", "name", "engine", "metadata", "desired_state"]}),
        ("Status", {"fields": STATUS_FIELDS}),
        ("Requests", {"fields": REQUEST_FIELDS}),
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

    # Live cells: the script updates them from `/ws/sessions/` by the data- attributes.
    @admin.display(description="status", ordering="status")
    def status_badge(self, session: Session):
        return badge(session.status, session_status=session.pk)

    @admin.display(description="phone number", ordering="phone_number")
    def phone(self, session: Session):
        return format_html(
            '<span data-session-phone="{}">{}</span>', session.pk, session.phone_number or "-"
        )

    @admin.display(description="worker", ordering="worker__name")
    def worker_name(self, session: Session):
        return format_html(
            '<span data-session-worker="{}">{}</span>',
            session.pk,
            session.worker.name if session.worker else "-",
        )

    @admin.display(description="groups")
    def groups_link(self, session: Session):
        """The groups the number is in (the groups app's cache), listed in their own admin."""
        url = reverse("admin:groups_group_changelist")
        count = session.groups.count()
        noun = "group" if count == 1 else "groups"
        return format_html('<a href="{}?session__exact={}">{} {}</a>', url, session.pk, count, noun)

    @admin.display(description="last change", ordering="status_changed_at")
    def last_change(self, session: Session):
        return ago(session.status_changed_at, session_changed=session.pk)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        return super().changelist_view(
            request, {**(extra_context or {}), "worker_names": _worker_names()}
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        session = self.get_object(request, object_id)
        if session is not None:
            extra_context = {
                **(extra_context or {}),
                "worker_names": _worker_names(),
                "linking_statuses": LINKING,
                "timeline": session.events.order_by("-created_at", "-id")[:TIMELINE_LENGTH],
                "events_url": reverse("admin:sessions_app_sessionevent_changelist")
                + f"?session__id__exact={session.pk}",
            }
            # Linking (a pairing code, the link page's token, which can ask for one) is a change.
            if self.has_change_permission(request, session):
                token = ws_token_make(session.pk)
                extra_context |= {
                    "pair_code_url": reverse(
                        "admin:sessions_app_session_pair_code", args=[session.pk]
                    ),
                    "link_url": reverse("link-page", args=[session.pk]) + f"?token={token}",
                    "link_minutes": settings.WS_TOKEN_SECONDS // 60,
                }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        pair_code = self.admin_site.admin_view(require_POST(self.pair_code_view))
        return [
            path(
                "<uuid:session_id>/pair-code/",
                pair_code,
                name="sessions_app_session_pair_code",
            ),
            *super().get_urls(),
        ]

    def pair_code_view(self, request: HttpRequest, session_id) -> JsonResponse:
        """The session page's "link with a pairing code" (CSRF-protected, change permission)."""
        session = get_object_or_404(Session, pk=session_id)
        if not self.has_change_permission(request, session):
            raise PermissionDenied
        return pair_code_response(session, request.body)

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
