"""`serve`: the all-in-one gateway in one process, for trying it out and for small installs; with
`--no-worker`, the WebSocket server of a production install.

uvicorn serves HTTP and WebSockets, and a worker runs on the same event loop (so the in-memory
channel layer of the embedded mode reaches both). uvicorn streams request bodies with
backpressure, so a large body is never held in memory (daphne, used before, buffered and parsed
whole bodies in Twisted first: 60 MB without credentials grew the process by ~720 MB);
`gateway.limits` refuses oversized ones at the edge. On SIGTERM/SIGINT the worker stops
gracefully (hands its sessions over) before the server closes.
"""

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from workers.runtime.worker import RuntimeConfig, WorkerRuntime

# Frames a browser sends here are small (the consumers read none of any size).
WS_MAX_BYTES = 64 * 1024
GRACEFUL_SECONDS = 10


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
        self,
        *args: object,
        host: str,
        port: int,
        no_worker: bool,
        engines: str,
        **options: object,
    ) -> None:
        from gateway.asgi import application

        config = uvicorn.Config(
            application,
            host=host,
            port=port,
            lifespan="off",
            http="httptools",
            ws="websockets-sansio",
            ws_max_size=WS_MAX_BYTES,
            log_config=None,  # our JSON logging (gateway.settings.LOGGING)
            access_log=False,  # the request log line is gateway.middleware's
            server_header=False,
            proxy_headers=False,  # X-Forwarded-Proto is read by Django (SECURE_PROXY_SSL_HEADER)
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
        )
        sock = config.bind_socket()  # a port in use fails here, before a worker claims anything
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
        worker = None
        if not no_worker:
            chosen = [e.strip() for e in engines.split(",") if e.strip()]
            worker = RuntimeConfig.from_settings(name=f"serve-{port}", engines=chosen)
        asyncio.run(self.run(Server(config), sock, worker))

    async def run(
        self, server: "Server", sock: socket.socket, worker: RuntimeConfig | None
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        runtime = WorkerRuntime(worker) if worker is not None else None
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock])),
            asyncio.create_task(stop.wait()),
        ]
        if runtime is not None:
            tasks.append(asyncio.create_task(runtime.run()))
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if runtime is not None:
            runtime.stop.set()
            await tasks[2]  # the worker hands its sessions over while the web still answers
        server.should_exit = True
        await tasks[0]
        tasks[1].cancel()


class Server(uvicorn.Server):
    """uvicorn's server with the signals left to `Command.run`, which stops the worker first
    (uvicorn's own handlers would also raise the signal again once it is done)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
