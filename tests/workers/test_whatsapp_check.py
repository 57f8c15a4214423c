"""`manage.py whatsapp_check` over the neonize double (WhatsApp's side played by FakeWhatsApp),
and offline: the real engine host, the real neonize adapter, only WhatsApp replaced."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from neonize.proto import Neonize_pb2 as N

from tests import netns
from tests.neonize_double.harness import double_env
from tests.neonize_double.whatsapp import FakeWhatsApp

SESSION = "whatsapp-check"
TO = "4915123456789@s.whatsapp.net"


@pytest.fixture
def world(tmp_path: Path, monkeypatch):
    world = FakeWhatsApp(tmp_path / "whatsapp").start()
    for name, value in double_env(world).items():
        monkeypatch.setenv(name, value)  # the command's engine host inherits them
    yield world
    world.close()


class Output(io.StringIO):
    """What the command prints; `shown(text)` waits until `text` was printed."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            written = super().write(text)
            self.changed.notify_all()
        return written

    def shown(self, text: str, timeout: float = 30) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: text in self.getvalue(), timeout), text


def run_in_thread(*args: str) -> tuple[threading.Thread, Output, dict]:
    out, outcome = Output(), {}

    def run() -> None:
        try:
            call_command("whatsapp_check", *args, stdout=out)
        except CommandError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out, outcome


def delivered(message_id: str) -> N.Receipt:
    return N.Receipt(
        MessageSource=N.MessageSource(Chat=N.JID(User="4915123456789", Server="s.whatsapp.net")),
        MessageIDs=[message_id],
        Timestamp=int(time.time()),
        Type=N.Receipt.ReceiptType.Value("DELIVERED"),
    )


def test_it_links_by_qr_sends_waits_for_delivered_and_logs_out(world: FakeWhatsApp) -> None:
    thread, out, outcome = run_in_thread("--to", "+4915123456789")
    out.shown("scan this QR code")  # the phone can only scan a code it was shown
    world.scan(SESSION, "+15550123")
    [sent] = world.wait(lambda: world.received(TO), what="the text on the phone")
    world.receipt(SESSION, delivered(sent["id"]))
    thread.join(60)
    assert not thread.is_alive() and "error" not in outcome, outcome
    lines = out.getvalue()
    for step in ["scan this QR code", "linked as +15550123", f"sent {sent['id']}", "delivered"]:
        assert step in lines
    assert "logged out" in lines and world.devices[SESSION].removed
    assert lines.splitlines()[-1].startswith("[")  # every step carries its time


def test_a_pairing_code_is_printed_with_phone(world: FakeWhatsApp) -> None:
    thread, out, outcome = run_in_thread("--phone", "+15550123")
    out.shown("pairing code ")
    world.scan(SESSION, "+15550123")
    thread.join(60)
    assert "error" not in outcome, outcome
    assert "pairing code " in out.getvalue() and "linked as +15550123" in out.getvalue()


def test_unreachable_whatsapp_fails_fast_with_the_reason(
    tmp_path: Path, monkeypatch, world: FakeWhatsApp
) -> None:
    monkeypatch.setenv("NEONIZE_DOUBLE_SOCKET", str(tmp_path / "nowhere.sock"))
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"WhatsApp cannot be reached: .*failed to dial"):
        call_command("whatsapp_check", stdout=io.StringIO())
    assert time.monotonic() - started < 15


def test_a_network_that_never_answers_fails_within_the_timeout(world: FakeWhatsApp) -> None:
    world.handshake_delay = 30  # the servers take the connection and never answer
    with pytest.raises(CommandError, match="no answer from WhatsApp in 2 s"):
        call_command("whatsapp_check", "--timeout", "2", stdout=io.StringIO())


def test_real_neonize_offline_fails_fast_with_the_reason() -> None:
    """The real neonize (no double), in a namespace with only loopback: its dial fails at once
    and the operator reads why."""
    started = time.monotonic()
    with netns.offline(), pytest.raises(CommandError, match="WhatsApp cannot be reached"):
        call_command("whatsapp_check", stdout=io.StringIO())
    assert time.monotonic() - started < 15


def test_keep_needs_a_store_that_stays() -> None:
    with pytest.raises(CommandError, match="--keep needs --auth-dir"):
        call_command("whatsapp_check", "--keep")
