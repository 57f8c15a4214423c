"""The contract matches the server: schemathesis with every check against `/api/schema/`.

The gateway under test runs on the embedded defaults in a network namespace that has only
loopback, and schemathesis runs in it too: whatever URL it makes the gateway fetch (`media.url`),
nothing leaves the machine. A fixed seed and a bounded number of examples keep it to minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import netns
from tests.gateway.test_settings import GATEWAY_VARS, ROOT
from tests.processes import free_port

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261201
EXAMPLES = 25


@pytest.fixture
def namespace():
    with netns.namespace("gw-contract") as name:
        yield name


@pytest.mark.timeout(900)
def test_schemathesis_finds_no_failure_with_every_check(tmp_path: Path, namespace: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in GATEWAY_VARS}
    env.update(
        GATEWAY_VAR_DIR=str(tmp_path / "var"),
        DEFAULT_ENGINE="sandbox",
        SANDBOX_TIMINGS='{"qr_first": 60}',
        WORKER_CALL_SECONDS="2",  # calls to sessions no worker runs answer 503 quickly
        API_THROTTLE_RATE="off",
        CHECK_NUMBERS_RATE="off",
        PAIR_CODE_RATE="off",
        LOG_LEVEL="WARNING",
    )
    manage = [sys.executable, "manage.py"]
    run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run([*manage, "migrate", "--noinput"], **run, timeout=120)
    made = subprocess.run([*manage, "create_api_key", "contract"], **run, timeout=60)
    key = made.stdout.split()[-1]
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        netns.in_namespace(
            namespace, *manage, "serve", "--port", str(port), "--engines", "sandbox"
        ),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        result = subprocess.run(
            netns.in_namespace(
                namespace,
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(CONFIG),
                "run",
                f"http://127.0.0.1:{port}/api/schema/",
                "--wait-for-schema",
                "60",
                "--checks",
                "all",
                "--header",
                f"X-API-Key: {key}",
                "--seed",
                str(SEED),
                "--max-examples",
                str(EXAMPLES),
                "--workers",
                "1",
                "--request-timeout",
                "20",
                "--no-color",
            ),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:]
