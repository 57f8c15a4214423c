from django.contrib import admin
from django.http import HttpRequest

from messaging.models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are a record of what happened: operators read and search them, never edit them."""

    list_display = [
        "created_at",
        "session",
        "direction",
        "type",
        "chat",
        "preview",
        "status",
        "error_code",
    ]
    list_filter = ["direction", "status", "type", "media_pending"]
    list_select_related = ["session"]
    search_fields = [
        "id",
        "wa_message_id",
        "idempotency_key",
        "chat",
        "sender",
        "sender_phone",
        "session__id",
        "session__external_id",
    ]
    date_hierarchy = "created_at"

    @admin.display(description="text")
    def preview(self, message: Message) -> str:
        text = message.text or message.caption or message.media_filename
        return text if len(text) <= 60 else text[:59] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
