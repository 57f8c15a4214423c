"""`python manage.py deliver_webhooks`: only the webhook dispatcher, for installations that want
delivery apart from the workers (any number may run, beside the workers' own dispatchers)."""

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from workers.runtime.db import db_close
from workers.runtime.dispatcher import Dispatcher
from workers.runtime.notify import listen


class Command(BaseCommand):
    help = "Deliver webhooks from the outbox until SIGTERM or SIGINT."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.BACKEND_URL:
            raise CommandError("BACKEND_URL is not set: there is nothing to deliver to.")
        asyncio.run(self.run())

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        dispatcher = Dispatcher(poll_seconds=2.0 if connection.vendor == "postgresql" else 0.5)
        tasks = [asyncio.create_task(dispatcher.run(stop))]
        if connection.vendor == "postgresql":
            tasks.append(
                asyncio.create_task(
                    listen({"gateway_webhooks": lambda _: dispatcher.wake.set()}, stop)
                )
            )
        self.stdout.write("delivering webhooks; stop with Ctrl-C")
        await stop.wait()
        dispatcher.wake.set()
        await tasks[0]  # finishes the requests under way
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        await db_close()
