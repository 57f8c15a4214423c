"""`serve` on the embedded defaults, as `make run` starts it, in a real process."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.gateway.test_settings import GATEWAY_VARS, ROOT
from tests.processes import free_port, wait_until

MANAGE = [sys.executable, "manage.py"]


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited early: {process.stdout.read()}")
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"serve did not answer at {url} within {timeout}s")


def embedded(var: Path, **env: str) -> dict[str, str]:
    """The environment of `make run`: no gateway settings but these, a migrated database."""
    environment = {k: v for k, v in os.environ.items() if k not in GATEWAY_VARS}
    environment.update(GATEWAY_VAR_DIR=str(var), **env)
    subprocess.run(
        [*MANAGE, "migrate", "--noinput"],
        cwd=ROOT,
        env=environment,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return environment


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [*MANAGE, "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, port


def test_serve_runs_the_gateway_on_embedded_defaults_and_stops_on_sigterm(tmp_path: Path) -> None:
    process, port = start_serve(embedded(tmp_path / "var"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", process)

        assert get(f"{base}/health/ready")[0] == 200
        status, body, _ = get(f"{base}/api/docs/")
        assert status == 200
        assert b"swagger-ui" in body and b"cdn." not in body
        static = body.decode().split('src="')[1].split('"')[0]
        assert get(f"{base}{static}")[0] == 200  # the docs' assets are served by the gateway
        assert get(f"{base}/admin/login/")[0] == 200
        assert get(f"{base}/api/v1/sessions")[0] == 401
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert f"http://localhost:{port}/admin/" in output
    assert f"http://localhost:{port}/api/docs/" in output


def call(base: str, method: str, path: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": key, "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def test_everything_serve_writes_is_its_own_users_alone(tmp_path: Path) -> None:
    """The embedded database, media, auth stores, snapshots and secrets: 0600 files in 0700
    directories, also when an older version left the var directory open."""
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    env = embedded(var, SANDBOX_TIMINGS='{"qr_first": 30}')
    made = subprocess.run(
        [*MANAGE, "create_api_key", "perms"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    key = made.stdout.split()[-1]
    process, port = start_serve(env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", process)
        session = call(base, "POST", "/api/v1/sessions", key, {"engine": "sandbox"})["id"]
        state = lambda: call(base, "GET", f"/api/v1/sessions/{session}", key)  # noqa: E731
        wait_until(lambda: state()["status"] == "scan_qr", 30, "a QR code")
        call(
            base,
            "POST",
            f"/api/v1/sandbox/sessions/{session}/scan",
            key,
            {"phone_number": "+15550001"},
        )
        wait_until(lambda: state()["status"] == "connected", 30, "the session to connect")
        media = {"data": base64.b64encode(b"%PDF-1.4 x").decode(), "mime_type": "application/pdf"}
        call(
            base,
            "POST",
            f"/api/v1/sandbox/sessions/{session}/receive",
            key,
            {"from": "+15550002", "type": "document", "media": media},
        )
        messages = lambda: call(base, "GET", f"/api/v1/sessions/{session}/messages", key)  # noqa: E731
        wait_until(lambda: any(m["media"] for m in messages()["results"]), 30, "the media")
    finally:
        process.send_signal(signal.SIGTERM)  # a graceful stop also snapshots the session
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output

    kinds = {"media": False, "auth": False, "sessions": False, "db.sqlite3": False}
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for path in var.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path.relative_to(var)}: {mode:o}"
        top = path.relative_to(var).parts[0]
        if top in kinds and path.is_file():
            kinds[top] = True
    assert all(kinds.values()), kinds  # each kind of secret was there to be checked


def test_serve_s_connections_send_without_waiting_for_the_client_s_ack() -> None:
    """Nagle's algorithm off on every accepted connection: with it on, a response's body (its
    second write) waited for the client's delayed ACK, ~40 ms on each keep-alive request."""
    import socket

    from workers.runtime.allinone import bind, web_config

    listener = bind(web_config(lambda *_: None, "127.0.0.1", 0))
    listener.listen()  # as uvicorn's server does with it
    with listener, socket.create_connection(listener.getsockname()[:2], timeout=5):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
