"""Gateway processes for tests and benchmarks (`manage.py run_worker`, `serve`, …).

Each process gets a directory of its own (as if on its own machine) and a log file in the work
directory; all share one simulated WhatsApp (SANDBOX_DIR). `stop_all` sends SIGTERM (after SIGCONT,
for tests that pause a process) and kills what has not stopped in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from workers.engines.sandbox import SandboxWorld

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class Processes:
    def __init__(self, workdir: Path, **env: str) -> None:
        self.workdir, self.env = workdir, env
        self.world = SandboxWorld(workdir / "sandbox")
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *command: str, **env: str) -> subprocess.Popen:
        """`manage.py *command` as `name`; `env` on top of the environment given at creation."""
        return self.run(name, [sys.executable, "manage.py", *command], **env)

    def run(self, name: str, argv: list[str], **env: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={
                **os.environ,
                "GATEWAY_VAR_DIR": str(self.workdir / name),
                "SANDBOX_DIR": str(self.workdir / "sandbox"),
                "LOG_LEVEL": "INFO",
                **self.env,
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self.processes[name]

    def worker(
        self, name: str, *, capacity: int = 200, engines: str = "sandbox", **env: str
    ) -> subprocess.Popen:
        """A worker called `name` (of the sandbox engine, unless told)."""
        command = ["run_worker", "--name", name, "--engines", engines]
        return self.start(name, *command, "--capacity", str(capacity), **env)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()

    def stop_all(self, timeout: float = 30) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(check: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `check` until it returns something true; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """True when `url` answers over HTTP (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


CHROMIUM = "/usr/bin/chromium"


def launch_chromium(playwright):
    """Debian's headless Chromium through Playwright (its own browser download cannot work here).
    Playwright's sync API runs an event loop in the calling thread: callers that use the ORM
    beside it set DJANGO_ALLOW_ASYNC_UNSAFE."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
