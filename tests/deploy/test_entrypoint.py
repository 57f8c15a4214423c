"""`deploy/entrypoint.sh`, the image's entrypoint, and `deploy/healthcheck.py`, its HEALTHCHECK:
each role really runs and serves (tests/deploy/conftest.py starts them), each `exec`s its server
(the PID that was started is the server's, so a signal reaches it), and the worker stops cleanly
on SIGTERM sent to that PID."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import websockets.sync.client

from tests.deploy.conftest import HEALTHCHECK, Stack, entrypoint_env, http, run
from tests.processes import ROOT, wait_until


def argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def healthcheck(*args: str, **env: str) -> int:
    command = [sys.executable, HEALTHCHECK, *args]
    return subprocess.run(command, env=entrypoint_env(**env), timeout=60).returncode


def test_migrate_applies_every_migration_and_creates_the_first_admin(stack: Stack) -> None:
    assert stack.migrate.returncode == 0
    assert "Created admin account 'operator'" in stack.migrate.stdout
    assert stack.query("SELECT username FROM auth_user WHERE is_superuser") == [("operator",)]
    # `manage.py …` passes through; `migrate --check` fails while any migration is unapplied.
    check = run("manage.py", "migrate", "--check", DATABASE_URL=stack.database_url)
    assert check.returncode == 0, check.stdout + check.stderr
    tables = stack.query("SELECT count(*) FROM pg_tables WHERE tablename = 'sessions_app_session'")
    assert tables == [(1,)]


def test_web_is_gunicorn_itself_with_the_processes_asked_for(stack: Stack) -> None:
    pid = stack.processes.processes["web"].pid
    assert "gunicorn" in " ".join(argv(pid))  # the shell exec'd into gunicorn's master
    wait_until(lambda: len(children(pid)) == 2, 30, "WEB_CONCURRENCY=2 gunicorn workers")

    assert http(stack.url("web", "/health"), host="gateway.test")[0] == 200
    created = http(
        stack.url("web", "/api/v1/sessions"),
        "POST",
        key=stack.api_key,
        body={"engine": "sandbox", "start": False},
        host="gateway.test",
    )
    assert created[0] == 201, created
    listed = http(stack.url("web", "/api/v1/sessions"), key=stack.api_key, host="gateway.test")
    assert listed[0] == 200
    assert created[1]["id"] in [s["id"] for s in listed[1]["results"]]


def test_the_health_check_names_an_allowed_host(stack: Stack) -> None:
    # By its address alone the gateway refuses the probe: it answers to its names only.
    assert http(stack.url("web", "/health"))[0] == 400
    assert healthcheck("http", PORT=str(stack.ports["web"])) == 0
    assert healthcheck("http", PORT=str(stack.ports["ws"])) == 0
    assert healthcheck("http", PORT=str(stack.ports["web"]), ALLOWED_HOSTS=".elsewhere.test") == 1


def test_ws_serves_websockets_from_uvicorn(stack: Stack) -> None:
    pid = stack.processes.processes["ws"].pid
    assert argv(pid)[-6:] == [
        "serve",
        "--no-worker",
        "--host",
        "127.0.0.1",
        "--port",
        str(stack.ports["ws"]),
    ]
    url = f"ws://127.0.0.1:{stack.ports['ws']}/ws/events/"
    with websockets.sync.client.connect(url, additional_headers={"X-API-Key": stack.api_key}):
        pass  # the handshake was accepted: a refused one raises
    try:
        websockets.sync.client.connect(url).close()
    except websockets.InvalidStatus as refused:
        assert refused.response.status_code == 403  # no key: the same server refuses
    else:
        raise AssertionError("a socket without credentials was accepted")


def test_all_migrates_and_serves_on_the_embedded_defaults(stack: Stack) -> None:
    process = stack.processes.processes["all"]
    assert "serve" in argv(process.pid) and "--no-worker" not in argv(process.pid)
    assert http(stack.url("all", "/health"))[0] == 200
    database = stack.processes.workdir / "all" / "db.sqlite3"
    with sqlite3.connect(database) as connection:
        applied = connection.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
    assert applied > 0


def test_an_unknown_role_is_a_usage_error_and_commands_pass_through() -> None:
    unknown = run("wokrer")
    assert unknown.returncode == 64
    assert "unknown role or command: wokrer" in unknown.stderr
    assert "usage: entrypoint.sh ROLE" in unknown.stderr
    command = run("python", "-c", "import sys; print(sys.executable)")
    assert command.returncode == 0
    assert Path(command.stdout.strip()).parent == Path(sys.executable).parent  # the venv's


def test_every_variable_the_entrypoint_reads_is_documented() -> None:
    script = (ROOT / "deploy" / "entrypoint.sh").read_text()
    read = set(re.findall(r"\$\{([A-Z_]+):-", script))
    assert read >= {"PORT", "WEB_CONCURRENCY", "WORKER_CAPACITY"}
    example, readme = (ROOT / ".env.example").read_text(), (ROOT / "README.md").read_text()
    assert [name for name in sorted(read) if f"# {name}=" not in example] == []
    assert [name for name in sorted(read) if f"`{name}`" not in readme] == []


def test_the_worker_registers_and_hands_its_sessions_over_on_sigterm(stack: Stack) -> None:
    """Last: it stops the package's worker."""
    process = stack.processes.processes["worker"]
    assert "run_worker" in argv(process.pid)  # the PID started is the worker's own
    registered = lambda: stack.query(  # noqa: E731
        "SELECT id, name, capacity, status FROM workers_worker WHERE pid = %s", process.pid
    )
    worker_id, name, capacity, status = wait_until(registered, 60, "the worker's row")[0]
    assert (name, capacity, status) == (os.uname().nodename, 7, "active")
    assert healthcheck("worker", DATABASE_URL=stack.database_url) == 0

    created = http(
        stack.url("web", "/api/v1/sessions"),
        "POST",
        key=stack.api_key,
        body={"engine": "sandbox"},
        host="gateway.test",
    )
    session = created[1]["id"]
    held = lambda: stack.query(  # noqa: E731
        "SELECT status FROM sessions_app_session WHERE id = %s AND worker_id = %s",
        session,
        worker_id,
    )
    wait_until(lambda: held() and held()[0][0] == "scan_qr", 60, "the worker to run the session")

    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 0, stack.processes.log("worker")[-3000:]
    assert stack.query(
        "SELECT worker_id, lease_expires_at FROM sessions_app_session WHERE id = %s", session
    ) == [(None, None)]
    assert stack.query("SELECT status FROM workers_worker WHERE id = %s", worker_id) == [
        ("stopped",)
    ]
    assert healthcheck("worker", DATABASE_URL=stack.database_url) == 1
