"""`python manage.py deliver_webhooks`: only the webhook dispatcher, for installations that want
delivery apart from the workers (any number may run, beside the workers' own dispatchers)."""

import asyncio

from django.core.management.base import BaseCommand

from gateway.core import tracing
from workers.runtime.dispatcher import deliver
from workers.runtime.signals import stop_on_signals


class Command(BaseCommand):
    help = "Deliver webhooks from the outbox until SIGTERM or SIGINT."

    def handle(self, *args: object, **options: object) -> None:
        tracing.setup()  # BACKEND_URL or not: endpoints made through the API need none
        self.stdout.write("delivering webhooks; stop with Ctrl-C")
        self.stdout.flush()
        asyncio.run(self.run())

    async def run(self) -> None:
        await deliver(stop_on_signals())
