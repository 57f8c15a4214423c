"""`manage.py run_worker` as a real process: it holds sessions and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessions_app import services as sessions
from sessions_app.models import Session
from tests.gateway.test_settings import ROOT
from workers.models import Worker

pytestmark = pytest.mark.django_db(transaction=True)
FAST = {"qr_first": 30, "qr_next": 30}


def wait_for(check, timeout: float = 30, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def start_worker(name: str, tmp_path: Path, database_url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "SANDBOX_TIMINGS": json.dumps(FAST),
        "GATEWAY_VAR_DIR": str(tmp_path),
        "WORKER_LEASE_SECONDS": "6",
        "DATABASE_URL": database_url,
    }
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--name", name, "--engines", "sandbox"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_sigterm_releases_the_leases_and_exits_0(tmp_path: Path, test_database_url: str) -> None:
    session, _ = sessions.session_create(external_id=None, engine="sandbox")
    worker = start_worker("proc-1", tmp_path, test_database_url)
    try:
        row = wait_for(
            lambda: Session.objects.filter(
                pk=session.pk, status="scan_qr", worker__isnull=False
            ).first(),
            what="the worker to claim the session and show a QR",
        )
        assert row.worker.pid == worker.pid
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        output = (tmp_path / "proc-1.log").read_text()
        print(output)  # shown when the test fails

    assert worker.returncode == 0, output
    row = Session.objects.get(pk=session.pk)
    assert (row.worker, row.lease_expires_at, row.status) == (None, None, "stopped")
    assert Worker.objects.get(name="proc-1").status == "stopped"
