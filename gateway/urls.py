from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from gateway import fleet, health, metrics
from gateway.core import keys
from gateway.outbox import views as webhook_views
from groups import views as group_views
from messaging import views as message_views
from sessions_app import link, sandbox
from sessions_app import views as session_views
from workers import views as worker_views

# API paths have no trailing slash, as documented (`/api/v1/sessions/{id}/start`).
api_v1 = [
    path("sessions", session_views.SessionListCreateApi.as_view(), name="session-list"),
    path(
        "sessions/<uuid:session_id>",
        session_views.SessionDetailApi.as_view(),
        name="session-detail",
    ),
    path(
        "sessions/<uuid:session_id>/start",
        session_views.SessionStartApi.as_view(),
        name="session-start",
    ),
    path(
        "sessions/<uuid:session_id>/stop",
        session_views.SessionStopApi.as_view(),
        name="session-stop",
    ),
    path(
        "sessions/<uuid:session_id>/restart",
        session_views.SessionRestartApi.as_view(),
        name="session-restart",
    ),
    path("sessions/<uuid:session_id>/migrate", session_views.SessionMigrateApi.as_view()),
    path("sessions/<uuid:session_id>/qr", session_views.SessionQrApi.as_view()),
    path("sessions/<uuid:session_id>/ws-token", session_views.SessionWsTokenApi.as_view()),
    path("sessions/<uuid:session_id>/pair-code", session_views.SessionPairCodeApi.as_view()),
    path(
        "sessions/<uuid:session_id>/logout",
        session_views.SessionLogoutApi.as_view(),
        name="session-logout",
    ),
    path("sessions/<uuid:session_id>/messages", message_views.SessionMessagesApi.as_view()),
    path("sessions/<uuid:session_id>/chats", message_views.ChatListApi.as_view()),
    path(
        "sessions/<uuid:session_id>/chats/<str:chat>/messages",
        message_views.ChatMessagesApi.as_view(),
    ),
    path("sessions/<uuid:session_id>/chats/<str:chat>/read", message_views.ChatReadApi.as_view()),
    path(
        "sessions/<uuid:session_id>/messages/<uuid:message_id>",
        message_views.SessionMessageApi.as_view(),
    ),
    path(
        "sessions/<uuid:session_id>/messages/<uuid:message_id>/read",
        message_views.MessageReadApi.as_view(),
    ),
    path("sessions/<uuid:session_id>/check-numbers", message_views.CheckNumbersApi.as_view()),
    path("sessions/<uuid:session_id>/presence", session_views.SessionPresenceApi.as_view()),
    path("sessions/<uuid:session_id>/blocklist", session_views.SessionBlocklistApi.as_view()),
    path("sessions/<uuid:session_id>/contacts/<str:contact>", session_views.ContactApi.as_view()),
    path("sessions/<uuid:session_id>/lids/<str:lid>", session_views.LidApi.as_view()),
    path("sessions/<uuid:session_id>/profile", session_views.ProfileApi.as_view()),
    path("sessions/<uuid:session_id>/profile/picture", session_views.ProfilePictureApi.as_view()),
    path("sessions/<uuid:session_id>/groups", group_views.GroupListCreateApi.as_view()),
    path("sessions/<uuid:session_id>/groups/join", group_views.GroupJoinApi.as_view()),
    path("sessions/<uuid:session_id>/groups/<str:jid>", group_views.GroupDetailApi.as_view()),
    path(
        "sessions/<uuid:session_id>/groups/<str:jid>/picture",
        group_views.GroupPictureApi.as_view(),
    ),
    path(
        "sessions/<uuid:session_id>/groups/<str:jid>/participants",
        group_views.GroupParticipantsApi.as_view(),
    ),
    path(
        "sessions/<uuid:session_id>/groups/<str:jid>/invite-link",
        group_views.GroupInviteLinkApi.as_view(),
    ),
    path(
        "sessions/<uuid:session_id>/groups/<str:jid>/invite-link/revoke",
        group_views.GroupInviteRevokeApi.as_view(),
    ),
    path("sessions/<uuid:session_id>/groups/<str:jid>/leave", group_views.GroupLeaveApi.as_view()),
    path(
        "sessions/<uuid:session_id>/presence/<str:chat>/subscribe",
        session_views.PresenceSubscribeApi.as_view(),
    ),
    path(
        "sessions/<uuid:session_id>/chats/<str:chat>/typing",
        session_views.ChatPresenceApi.as_view(),
    ),
    path("messages/<uuid:message_id>", message_views.MessageDetailApi.as_view()),
    path("usage", session_views.UsageApi.as_view(), name="usage"),
    path("sandbox/sessions/<uuid:session_id>/scan", sandbox.SandboxScanApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/receive", sandbox.SandboxReceiveApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/disconnect", sandbox.SandboxDisconnectApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/logout", sandbox.SandboxLogoutApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/replace", sandbox.SandboxReplaceApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/freeze", sandbox.SandboxFreezeApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/ban", sandbox.SandboxBanApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/outdate", sandbox.SandboxOutdateApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/receipts", sandbox.SandboxReceiptsApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/presence", sandbox.SandboxPresenceApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/block", sandbox.SandboxBlockApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/group-event", sandbox.SandboxGroupEventApi.as_view()),
    path("sandbox/sessions/<uuid:session_id>/history", sandbox.SandboxHistoryApi.as_view()),
    path("webhooks", webhook_views.EndpointListCreateApi.as_view(), name="webhook-list"),
    path("webhooks/<uuid:endpoint_id>", webhook_views.EndpointDetailApi.as_view()),
    path("webhooks/<uuid:endpoint_id>/test", webhook_views.EndpointTestApi.as_view()),
    path("webhooks/<uuid:endpoint_id>/rotate-secret", webhook_views.EndpointRotateApi.as_view()),
    path("webhooks/<uuid:endpoint_id>/deliveries", webhook_views.EndpointDeliveriesApi.as_view()),
    path(
        "webhooks/<uuid:endpoint_id>/deliveries/replay",
        webhook_views.EndpointReplayApi.as_view(),
    ),
    path("keys", keys.KeyListCreateApi.as_view(), name="key-list"),
    path("keys/<str:key_id>", keys.KeyDetailApi.as_view(), name="key-detail"),
    path("workers", worker_views.WorkerListApi.as_view(), name="worker-list"),
    path("workers/<uuid:worker_id>", worker_views.WorkerDetailApi.as_view(), name="worker-detail"),
    path("workers/<uuid:worker_id>/drain", worker_views.WorkerDrainApi.as_view()),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script from a URL, so the docs need no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("link/<uuid:session_id>/", link.link_page, name="link-page"),
    path("link/<uuid:session_id>/pair-code", link.link_pair_code, name="link-pair-code"),
    path("media/<str:token>", message_views.media_download, name="media-download"),
    path("health", health.live, name="health"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/fleet.json", fleet.fleet_json, name="admin-fleet"),
    path("admin/", admin.site.urls),
]

handler400 = "gateway.core.errors.handler400"
handler403 = "gateway.core.errors.handler403"
handler404 = "gateway.core.errors.handler404"
handler500 = "gateway.core.errors.handler500"
