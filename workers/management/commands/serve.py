"""`serve`: the all-in-one gateway in one process (the web and a worker), for trying it out and
for small installs; with `--no-worker`, the WebSocket server of a production install."""

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from gateway.core import tracing
from workers.runtime.allinone import bind, serve, web_config
from workers.runtime.config import RuntimeConfig


class Command(BaseCommand):
    help = "Run the all-in-one gateway: API, admin, WebSockets and a worker in one process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Serve the web only.")
        parser.add_argument(
            "--engines", default="", help="The worker's engines, comma-separated (default: all)."
        )

    def handle(
        self, *args: object, host: str, port: int, no_worker: bool, engines: str, **options: object
    ) -> None:
        tracing.setup()
        from gateway.asgi import application  # the web app only where it is served

        config = web_config(application, host, port)
        sock = bind(config)  # a port in use fails here, before a worker claims anything
        base = settings.PUBLIC_URL or f"http://{'localhost' if host in LOCAL else host}:{port}"
        with_worker = not no_worker
        self.stdout.write(
            f"WhatsApp gateway {settings.VERSION} listening on {host}:{port}"
            f"{' (with a worker)' if with_worker else ''}\n"
            f"  admin     {base}/admin/\n  API docs  {base}/api/docs/\n"
            f"  health    {base}/health/ready\nStop with Ctrl-C."
        )
        self.stdout.flush()
        chosen = [e.strip() for e in engines.split(",") if e.strip()]
        worker = RuntimeConfig.from_settings(name=f"serve-{port}", engines=chosen)
        asyncio.run(serve(config, sock, worker if with_worker else None))


LOCAL = ("127.0.0.1", "0.0.0.0", "::")
