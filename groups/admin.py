"""The groups each session is in, in the admin (read-only: they are WhatsApp's)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from groups.models import Group


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("subject", "jid", "session", "member_count", "announce", "locked", "updated_at")
    list_filter = ("announce", "locked")
    search_fields = ("subject", "jid", "session__name", "session__phone_number")
    list_select_related = ("session",)
    readonly_fields = [field.name for field in Group._meta.fields] + ["participants"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return False
