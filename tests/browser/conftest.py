"""Real-browser tests: the gateway as `manage.py serve` (HTTP, WebSockets and a sandbox worker) on
the test database and Redis, driven by headless Chromium (Debian's `chromium`) through Playwright.

Chromium missing is a failure, never a skip (`make test` installs it). Screenshots are saved in
`test-artifacts/` at the checkout's root.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework_api_key.models import APIKey

from tests.processes import (
    CHROMIUM,
    ROOT,
    Processes,
    answers,
    free_port,
    launch_chromium,
    wait_until,
)

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still plain synchronous code, so Django's async guard is lifted for these tests only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # A phone-sized screen: the link page is mostly opened on the phone's owner's other device,
    # but it must work on a phone too.
    context = browser.new_context(viewport={"width": 390, "height": 844})
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshot(page, request) -> Iterator[object]:
    ARTIFACTS.mkdir(exist_ok=True)

    def take(step: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    yield take


class Gateway:
    def __init__(self, url: str, api_key: str) -> None:
        self.url, self.api_key = url, api_key

    def post(self, path: str, body: dict) -> dict:
        return self.call("POST", path, body)

    def get(self, path: str) -> dict:
        return self.call("GET", path)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": self.api_key},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")


def start_gateway(tmp_path: Path, database_url: str, **env: str) -> Iterator[Gateway]:
    """`serve` with its worker; QR codes rotate every 3 s so a test sees one change."""
    processes = Processes(
        tmp_path,
        DATABASE_URL=database_url,
        SANDBOX_TIMINGS=json.dumps({"qr_first": 4, "qr_next": 3, "qr_rotations": 30}),
        **env,
    )
    port = free_port()
    server = processes.start("serve", "serve", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if server.poll() is not None:
            pytest.fail("serve exited:\n" + processes.log("serve")[-3000:])
        return answers(url + "/health")

    wait_until(up, 60, "serve to answer")
    try:
        yield Gateway(url, APIKey.objects.create_key(name="browser-test")[1])
    finally:
        processes.stop_all()
        shutil.rmtree(tmp_path / "sandbox", ignore_errors=True)


@pytest.fixture
def gateway(tmp_path: Path, test_database_url: str, transactional_db) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path, test_database_url)


@pytest.fixture
def gateway_with_local_files(
    tmp_path: Path, test_database_url: str, transactional_db
) -> Iterator[Gateway]:
    """The gateway keeping media on its own disk, so it serves them on its own origin."""
    yield from start_gateway(tmp_path, test_database_url, S3_BUCKET="", S3_ENDPOINT_URL="")


@pytest.fixture
def csp_violations(page) -> list[str]:
    """What the page's Content-Security-Policy refused, as Chromium reports it."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return refused
