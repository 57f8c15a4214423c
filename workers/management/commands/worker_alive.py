"""`python manage.py worker_alive`: exit 0 while this host's worker heartbeats; a liveness probe.

A worker has no HTTP listener: its pulse is its row's heartbeat, written every
`WORKER_LEASE_SECONDS / 3`. The newest worker registered from this host (in Kubernetes the
hostname is the pod's name) is alive while that heartbeat is younger than the lease TTL, which is
when the other workers would declare it dead. A database that cannot be reached says nothing about
the worker, and restarting it would not bring the database back: that answers alive too.
"""

import socket

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from workers.selectors import worker_alive_on


class Command(BaseCommand):
    help = "Exit 0 while this host's newest worker heartbeats within the lease TTL, else 1."
    requires_system_checks: list[str] = []  # a probe: quick, and about the worker alone

    def handle(self, *args: object, **options: object) -> None:
        hostname = socket.gethostname()
        try:
            alive = worker_alive_on(hostname=hostname)
        except DatabaseError as exc:
            self.stdout.write(
                f"database unreachable ({type(exc).__name__}); not judging {hostname}"
            )
            return
        if not alive:
            raise CommandError(f"no worker of {hostname} has a heartbeat within the lease TTL")
        self.stdout.write(f"worker of {hostname} alive")
