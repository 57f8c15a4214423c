from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from gateway import checks, metrics  # noqa: F401 - registers system checks and collectors

        metrics.register()
