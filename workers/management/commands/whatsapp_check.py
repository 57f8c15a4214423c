"""`python manage.py whatsapp_check`: a live check of the real engine against WhatsApp itself.

For an operator on a machine that can reach WhatsApp: link a throwaway session (the QR code in the
terminal, or a pairing code with `--phone`), send a text to `--to` and wait for it to be delivered,
then log out (unless `--keep`). Each step prints the seconds it took. Nothing touches the database:
the session lives in a temporary directory (or `--auth-dir`), in an engine host process of its own.

Where WhatsApp cannot be reached the check fails within `--timeout` seconds (15) with the reason.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.core.jids import recipient_jid
from workers.engines.base import (
    Connected,
    Disconnected,
    EngineError,
    LoggedOut,
    OutboundMessage,
    QrCode,
    Receipt,
)

SESSION = "whatsapp-check"


class CheckFailed(Exception):
    pass


class Command(BaseCommand):
    help = "Link, send and log out on WhatsApp itself with the neonize engine, timing each step."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--phone", default="", help="link by pairing code for this number")
        parser.add_argument("--to", default="", help="send a text to this number and wait")
        parser.add_argument("--keep", action="store_true", help="stay linked (needs --auth-dir)")
        parser.add_argument("--auth-dir", default="", help="keep the session's store here")
        parser.add_argument(
            "--timeout", type=float, default=15.0, help="seconds WhatsApp has to answer at all"
        )
        parser.add_argument(
            "--link-timeout", type=float, default=180.0, help="seconds to scan or type the code"
        )
        parser.add_argument(
            "--delivery-timeout", type=float, default=60.0, help="seconds to wait for delivered"
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["keep"] and not options["auth_dir"]:
            raise CommandError("--keep needs --auth-dir (a temporary store is deleted after)")
        try:
            asyncio.run(self._check(options))
        except CheckFailed as exc:
            raise CommandError(str(exc)) from None

    def step(self, started: float, text: str) -> None:
        self.stdout.write(f"[{time.monotonic() - started:6.1f} s] {text}")
        self.stdout.flush()

    async def _check(self, options: dict) -> None:
        from workers.engines.host.client import HostedEngine

        started = time.monotonic()
        engine = HostedEngine("neonize", sessions_per_host=1)
        with tempfile.TemporaryDirectory(prefix="whatsapp-check-") as temporary:
            auth = Path(options["auth_dir"] or temporary)
            try:
                await self._run(engine, auth, options, started)
            finally:
                await engine.close()

    async def _run(self, engine, auth: Path, options: dict, started: float) -> None:
        events: asyncio.Queue = asyncio.Queue()
        pump = asyncio.create_task(self._pump(engine, events))
        try:
            await self._steps(engine, events, auth, options, started)
        finally:
            pump.cancel()

    @staticmethod
    async def _pump(engine, events: asyncio.Queue) -> None:
        async for event in engine.events():
            if event.session_id == SESSION:
                events.put_nowait(event)

    async def _steps(self, engine, events, auth: Path, options: dict, started: float) -> None:
        await engine.start(SESSION, auth)
        self.step(started, "engine host started; connecting to WhatsApp")
        first = await self._next(events, (QrCode, Connected, Disconnected), options["timeout"])
        if isinstance(first, Disconnected):
            raise CheckFailed(f"WhatsApp cannot be reached: {first.reason or first.code}")
        if isinstance(first, QrCode):
            await self._link(engine, events, first, options, started)
        else:
            self.step(started, f"connected from the store as {first.phone_number}")
        if options["to"]:
            await self._send(engine, events, options, started)
        if options["keep"]:
            self.step(started, f"kept linked; the store is in {auth}")
            return
        await engine.logout(SESSION)
        await self._next(events, (LoggedOut,), options["timeout"])
        self.step(started, "logged out: the device is gone from the phone's linked devices")

    async def _link(self, engine, events, qr: QrCode, options: dict, started: float) -> None:
        if options["phone"]:
            code = await engine.request_pair_code(SESSION, options["phone"])
            self.step(
                started,
                f"pairing code {code}: on the phone, Linked devices > Link with phone number",
            )
        else:
            self.step(started, "scan this QR code: on the phone, Linked devices > Link a device")
            self.stdout.write(terminal_qr(qr.code))
        deadline = time.monotonic() + options["link_timeout"]
        while True:
            event = await self._next(
                events, (QrCode, Connected, Disconnected), deadline - time.monotonic()
            )
            if isinstance(event, Connected):
                self.step(started, f"linked as {event.phone_number}")
                return
            if isinstance(event, Disconnected) and not event.will_reconnect:
                raise CheckFailed(f"linking ended: {event.reason or event.code}")
            if isinstance(event, QrCode) and not options["phone"]:
                self.step(started, "a new QR code (the previous one expired)")
                self.stdout.write(terminal_qr(event.code))

    async def _send(self, engine, events, options: dict, started: float) -> None:
        try:
            to = recipient_jid(options["to"])
        except ValueError as exc:
            raise CheckFailed(f"--to: {exc}") from None
        text = f"whatsapp_check {time.strftime('%Y-%m-%d %H:%M:%S')}"
        try:
            result = await engine.send(
                SESSION, OutboundMessage(id="check", to=to, type="text", text=text)
            )
        except EngineError as exc:
            raise CheckFailed(f"sending failed ({exc.code}): {exc}") from None
        self.step(started, f"sent {result.wa_message_id} to {to}")
        deadline = time.monotonic() + options["delivery_timeout"]
        while True:
            receipt = await self._next(events, (Receipt,), deadline - time.monotonic())
            if result.wa_message_id in receipt.message_ids:
                self.step(started, f"{receipt.status} on the recipient's phone")
                return

    async def _next(self, events: asyncio.Queue, kinds: tuple[type, ...], timeout: float):
        """The session's next event of one of `kinds`, within `timeout` seconds."""

        async def find():
            while not isinstance(event := await events.get(), kinds):
                pass
            return event

        names = ", ".join(kind.__name__ for kind in kinds)
        try:
            return await asyncio.wait_for(find(), max(0.0, timeout))
        except TimeoutError:
            raise CheckFailed(
                f"no answer from WhatsApp in {timeout:.0f} s (waited for {names})"
            ) from None


def terminal_qr(code: str) -> str:
    import qrcode

    qr = qrcode.QRCode(border=1)
    qr.add_data(code)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()
