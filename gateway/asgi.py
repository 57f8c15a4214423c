"""The ASGI application (uvicorn, through `manage.py serve`): Django's HTTP app with request bodies
bounded at the edge, plus WebSockets under `/ws/`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
from gateway.core import tracing

tracing.setup()  # before the app loads its middleware (tracing's is one)
django_asgi_app = get_asgi_application()  # sets Django up before the routing imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from gateway.checks import refuse_serious_problems  # noqa: E402
from gateway.core.limits import asgi_body_limit  # noqa: E402
from gateway.routing import protect, websocket_urlpatterns  # noqa: E402

refuse_serious_problems()

application = ProtocolTypeRouter(
    {
        "http": asgi_body_limit(django_asgi_app),
        "websocket": protect(URLRouter(websocket_urlpatterns)),
    }
)
