from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The floor's own tables (API keys and their scopes, usage counters)."""

    name = "gateway.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"
