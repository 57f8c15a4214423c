"""`manage.py worker_alive`, the workers' liveness probe in deploy/kubernetes/."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models.functions import Now

from tests.processes import ROOT, Processes, free_port, wait_until
from workers.models import Worker

HOST = socket.gethostname()


def probe(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "worker_alive"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def alive() -> bool:
    try:
        call_command("worker_alive")
    except CommandError:
        return False
    return True


@pytest.mark.django_db
def test_it_judges_the_newest_worker_of_this_host_by_its_heartbeat() -> None:
    assert not alive()  # none registered yet (a starting pod: the startup probe waits)
    Worker.objects.create(name="elsewhere", hostname="another-pod")
    assert not alive()  # another pod's worker says nothing about this one

    old = Worker.objects.create(name="w", hostname=HOST, status="active")
    assert alive()
    Worker.objects.filter(pk=old.pk).update(status="draining")
    assert alive()  # handing its sessions over still heartbeats
    ttl = timedelta(seconds=settings.WORKER_LEASE_SECONDS + 1)
    Worker.objects.filter(pk=old.pk).update(last_heartbeat_at=Now() - ttl)
    assert not alive()  # silent for longer than the TTL: the others would declare it dead

    Worker.objects.filter(pk=old.pk).update(status="dead")
    new = Worker.objects.create(name="w", hostname=HOST)  # the container restarted
    assert alive()
    Worker.objects.filter(pk=new.pk).update(status="stopped")
    assert not alive()


def test_an_unreachable_database_does_not_fail_the_probe() -> None:
    result = probe(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/gateway")
    assert result.returncode == 0, result.stderr
    assert "database unreachable" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_it_fails_once_a_real_worker_stops_heartbeating(
    tmp_path: Path, test_database_url: str
) -> None:
    fleet = Processes(tmp_path, DATABASE_URL=test_database_url, WORKER_LEASE_SECONDS="6")
    env = {"DATABASE_URL": test_database_url, "WORKER_LEASE_SECONDS": "6"}
    try:
        worker = fleet.worker("probed")
        wait_until(lambda: probe(**env).returncode == 0, 60, "the probe to find the worker")
        os.kill(worker.pid, signal.SIGSTOP)  # hung: its heartbeats stop, the process lives on
        failed = wait_until(lambda: (r := probe(**env)).returncode == 1 and r, 30, "a failure")
        assert "no worker of" in failed.stderr
    finally:
        fleet.stop_all()
