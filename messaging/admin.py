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
    readonly_fields = ["edit_history", "reactions", "poll_votes"]

    @admin.display(description="text")
    def preview(self, message: Message) -> str:
        text = message.text or message.caption or message.media_filename
        return text if len(text) <= 60 else text[:59] + "…"

    @admin.display(description="earlier texts")
    def edit_history(self, message: Message) -> str:
        edits = message.payload.get("edits", [])
        return " → ".join(f"{e['text']!r} ({e['at'][:19]})" for e in edits) or "-"

    @admin.display(description="reactions")
    def reactions(self, message: Message) -> str:
        reactions = message.payload.get("reactions", {})
        return (
            ", ".join(
                f"{r['emoji']} {r.get('phone_number') or jid}" for jid, r in reactions.items()
            )
            or "-"
        )

    @admin.display(description="poll votes")
    def poll_votes(self, message: Message) -> str:
        votes = message.payload.get("votes", {})
        shown = [
            f"{vote.get('phone_number') or jid}: {', '.join(vote['options']) or '(withdrawn)'}"
            for jid, vote in votes.items()
        ]
        failed = len(message.payload.get("undecryptable_votes", []))
        if failed:
            shown.append(f"{failed} could not be decrypted")
        return "; ".join(shown) or "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
