"""The ASGI application for daphne: Django's HTTP app, plus WebSockets under `/ws/`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the routing imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from gateway.checks import refuse_serious_problems  # noqa: E402
from gateway.routing import protect, websocket_urlpatterns  # noqa: E402

refuse_serious_problems()

application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": protect(URLRouter(websocket_urlpatterns))}
)
