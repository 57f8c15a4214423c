"""`serve` on the embedded defaults, as `make run` starts it, in a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.gateway.test_settings import GATEWAY_VARS, ROOT
from tests.processes import free_port


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


def test_serve_runs_the_gateway_on_embedded_defaults_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in GATEWAY_VARS}
    env["GATEWAY_VAR_DIR"] = str(tmp_path / "var")
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        [*manage, "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    process = subprocess.Popen(
        [*manage, "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
