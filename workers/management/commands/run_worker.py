"""`python manage.py run_worker`: hold WhatsApp sessions until SIGTERM or SIGINT."""

import asyncio

from django.core.management.base import BaseCommand, CommandParser

from gateway.core import tracing
from workers.runtime.signals import stop_on_signals
from workers.runtime.worker import RuntimeConfig, WorkerRuntime


class Command(BaseCommand):
    help = "Run a worker: claim sessions, hold their connections, stop cleanly on SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="", help="Shown in the admin (default: hostname).")
        parser.add_argument("--capacity", type=int, default=100, help="Most sessions to hold.")
        parser.add_argument("--engines", default="", help="Comma-separated, e.g. sandbox,neonize.")

    def handle(
        self, *args: object, name: str, capacity: int, engines: str, **options: object
    ) -> None:
        tracing.setup()
        config = RuntimeConfig.from_settings(
            name=name,
            capacity=capacity,
            engines=[e.strip() for e in engines.split(",") if e.strip()],
        )
        asyncio.run(self.run(config))

    async def run(self, config: RuntimeConfig) -> None:
        runtime = WorkerRuntime(config)
        stop_on_signals(runtime.stop)
        await runtime.run()
