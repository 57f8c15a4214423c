"""`serve`: the all-in-one gateway in one process, for trying it out and for small installs.

It serves HTTP and WebSockets with daphne on the embedded defaults (or whatever the environment
configures). In production run gunicorn (HTTP), daphne (WebSockets) and `run_worker` separately.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the all-in-one gateway (web server with API, admin and WebSockets) in one process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: object, host: str, port: int, **options: object) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from gateway.asgi import application

        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
        base = settings.PUBLIC_URL or f"http://{shown}:{port}"
        self.stdout.write(
            f"WhatsApp gateway {settings.VERSION} listening on {host}:{port}\n"
            f"  admin     {base}/admin/\n"
            f"  API docs  {base}/api/docs/\n"
            f"  health    {base}/health/ready\n"
            "Stop with Ctrl-C."
        )
        self.stdout.flush()
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            server_name="gateway",
        ).run()
