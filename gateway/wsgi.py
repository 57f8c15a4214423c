"""The WSGI application for gunicorn: the API, the admin, health and metrics."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
from gateway.core import tracing

tracing.setup()  # before the app loads its middleware (tracing's is one)
django_wsgi_app = get_wsgi_application()

from gateway.checks import refuse_serious_problems  # noqa: E402 - needs Django set up
from gateway.core.limits import wsgi_body_limit  # noqa: E402

refuse_serious_problems()

application = wsgi_body_limit(django_wsgi_app)
