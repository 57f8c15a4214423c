"""`serve`: the all-in-one gateway in one process, for trying it out and for small installs.

Daphne serves HTTP and WebSockets, and a worker runs on daphne's own event loop (so the in-memory
channel layer of the embedded mode reaches both). On SIGTERM/SIGINT the worker stops gracefully
before the server exits. In production run gunicorn (HTTP), daphne (WebSockets) and `run_worker`
separately.
"""

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the all-in-one gateway: API, admin, WebSockets and a worker in one process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Serve the web only.")

    def handle(
        self, *args: object, host: str, port: int, no_worker: bool, **options: object
    ) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server  # installs Twisted's asyncio reactor

        from gateway.asgi import application

        if not no_worker:
            self.attach_worker(name=f"serve-{port}")
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
        base = settings.PUBLIC_URL or f"http://{shown}:{port}"
        self.stdout.write(
            f"WhatsApp gateway {settings.VERSION} listening on {host}:{port}"
            f"{'' if no_worker else ' (with a worker)'}\n"
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

    def attach_worker(self, name: str) -> None:
        from twisted.internet import defer, reactor

        from workers.runtime.worker import RuntimeConfig, WorkerRuntime

        runtime = WorkerRuntime(RuntimeConfig.from_settings(name=name))
        running: list[asyncio.Task] = []

        def start() -> None:
            running.append(asyncio.ensure_future(runtime.run()))

        def stop() -> defer.Deferred | None:
            runtime.stop.set()
            return defer.Deferred.fromFuture(running[0]) if running else None

        reactor.callWhenRunning(start)
        reactor.addSystemEventTrigger("before", "shutdown", stop)
