"""The image's roles run on this machine as the image runs them: `deploy/entrypoint.sh ROLE` with
the virtualenv's `python` first on PATH, on a database of their own (made here, migrated by the
`migrate` role, dropped at the end), the suite's Redis and S3. The long-running roles start at once,
in parallel, and serve every test of the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.processes import ROOT, Processes, answers, free_port, wait_until

ENTRYPOINT = str(ROOT / "deploy" / "entrypoint.sh")
HEALTHCHECK = str(ROOT / "deploy" / "healthcheck.py")
# The gateway answers to these names only (not 127.0.0.1): probes and clients must name one.
HOSTS = "gateway.test,localhost"


def container(**env: str) -> dict[str, str]:
    """What a container's environment has on top of the suite's: the virtualenv's python first on
    PATH (as /opt/venv/bin is in the image), servers listening on loopback only."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "HOST": "127.0.0.1", "ALLOWED_HOSTS": HOSTS, **env}


def entrypoint_env(**env: str) -> dict[str, str]:
    return {**os.environ, **container(**env)}


def run(*argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """`deploy/entrypoint.sh *argv` to its end, started elsewhere (it finds its own root)."""
    return subprocess.run(
        [ENTRYPOINT, *argv],
        cwd="/",
        env=entrypoint_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def http(
    url: str, method: str = "GET", *, key: str = "", body: dict | None = None, host: str = ""
) -> tuple[int, dict]:
    """(status, JSON body) of a request; `host` names the Host header (default: the URL's)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    if host:
        headers["Host"] = host
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"raw": raw.decode(errors="replace")}


@dataclass
class Stack:
    database_url: str
    api_key: str
    migrate: subprocess.CompletedProcess
    ports: dict[str, int]
    processes: Processes

    def url(self, role: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}{path}"

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            return connection.execute(sql, params).fetchall()


def _server(database_url: str, name: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    suite_url = os.environ["DATABASE_URL"]
    # One per pytest-xdist process: each may set the stack up, and one's DROP would end the other's.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    name = urlsplit(suite_url).path.strip("/") + "_deploy" + (f"_{worker}" if worker else "")
    admin = _server(suite_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    database_url = _server(suite_url, name)
    ports = {role: free_port() for role in ("web", "ws", "all")}
    processes = Processes(
        tmp_path_factory.mktemp("deploy"),
        **container(DATABASE_URL=database_url, LOG_LEVEL="WARNING"),
    )
    try:
        migrate = run(
            "migrate",
            DATABASE_URL=database_url,
            DJANGO_SUPERUSER_USERNAME="operator",
            DJANGO_SUPERUSER_PASSWORD="a-long-test-password",
            DJANGO_SUPERUSER_EMAIL="operator@example.com",
        )
        if migrate.returncode != 0:
            pytest.fail(f"entrypoint.sh migrate exited {migrate.returncode}:\n{migrate.stderr}")
        made = run("manage.py", "create_api_key", "deploy", DATABASE_URL=database_url)
        assert made.returncode == 0, made.stderr
        entry = [ENTRYPOINT]
        processes.run("web", [*entry, "web"], PORT=str(ports["web"]), WEB_CONCURRENCY="2")
        processes.run("ws", [*entry, "ws"], PORT=str(ports["ws"]))
        processes.run("worker", [*entry, "worker", "--engines", "sandbox"], WORKER_CAPACITY="7")
        # `all` as `docker run IMAGE` runs it: no services, the embedded defaults.
        embedded = dict.fromkeys(("DATABASE_URL", "REDIS_URL", "S3_BUCKET", "S3_ENDPOINT_URL"), "")
        processes.run("all", [*entry], PORT=str(ports["all"]), ALLOWED_HOSTS="", **embedded)
        stack = Stack(database_url, made.stdout.split()[-1], migrate, ports, processes)
        for role in ("web", "ws", "all"):
            wait_until(lambda role=role: _up(stack, role), 90, f"the {role} role")
        yield stack
    finally:
        processes.stop_all()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _up(stack: Stack, role: str) -> bool:
    process = stack.processes.processes[role]
    if process.poll() is not None:
        pytest.fail(f"the {role} role exited {process.returncode}:\n{stack.processes.log(role)}")
    return answers(stack.url(role, "/health"))
