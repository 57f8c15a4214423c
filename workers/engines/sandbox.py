"""The sandbox engine: a faithful simulation of WhatsApp's side, for tests, demos and load tests.

It runs in process, through the same runtime, storage, snapshot and webhook paths as neonize:

- linking: QR codes rotate on WhatsApp's schedule (60 s, then five of 20 s; shorter for tests) until
  a "scan" links the session as a phone number, or the window closes (`qr_timeout`); pairing codes
  link the same way;
- the session's credentials live in a SQLite store in its auth directory, so a worker that restores
  that directory reconnects without a new scan, until the device is unlinked;
- sends are `sent` at once, `delivered` and `read` after configurable delays, voice notes `played`;
  numbers ending in 0000 are not on WhatsApp; a message id is delivered to the simulated phone once;
- triggers for inbound messages (from contacts, from @lid senders that cannot be resolved, from
  the phone itself), dropped connections (also while linking), remote logouts, a stream replaced
  by another connection (learnt at once, as WhatsApp pushes it), a half-open connection (`freeze`),
  temporary bans and an outdated client;
- receipts as they come in real life, per session (`receipts`): normal, missing (read receipts
  off: `delivered` only), duplicated, out of order, or held until the next reconnect.

What the simulated WhatsApp servers know is shared by every process on the machine through a
directory (`SandboxWorld`): which devices are linked, a log of who connected from which worker and
when, and what each simulated phone received. Tests read it to check for overlapping owners and
duplicate deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.core.jids import is_group, jid_to_phone, jid_user, phone_to_jid
from workers.engines.base import (
    BlockAction,
    Blocked,
    BlocklistChange,
    BlocklistChanged,
    ChatState,
    Connected,
    Disconnected,
    Engine,
    EngineError,
    InboundMedia,
    InboundMessage,
    LoggedOut,
    MessageKind,
    MessageReceived,
    NumberCheck,
    OutboundMessage,
    PairCode,
    Presence,
    PresenceState,
    QrCode,
    Receipt,
    ReceiptStatus,
    SendResult,
    StreamReplaced,
    spawn_into,
    started_session,
)
from workers.engines.store import KeyValueStore, delete_store

NOT_ON_WHATSAPP_SUFFIX = "0000"
PRESENCE_STATES = ("available", "unavailable", "typing", "recording", "paused")
RECEIPT_MODES = ("normal", "missing", "duplicated", "out_of_order", "after_reconnect")


@dataclass(frozen=True)
class SandboxTimings:
    """Seconds. The defaults are WhatsApp's; tests shorten them."""

    qr_first: float = 60.0
    qr_next: float = 20.0
    qr_rotations: int = 5
    pair_code_valid: float = 180.0
    connect_delay: float = 0.0
    reconnect_delay: float = 1.0
    delivered_after: float = 1.0
    read_after: float = 3.0
    played_after: float = 2.0
    push_poll: float = 0.5  # how often a connection looks for what the servers push (replaced)


class SandboxWorld:
    """The simulated WhatsApp servers' state, in a directory shared by every process."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, session_id: str) -> Path:
        path = self.root / session_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def _locked(self, session_id: str) -> Iterator[Path]:
        directory = self._dir(session_id)
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield directory

    def link(self, session_id: str, phone_number: str) -> str:
        device = uuid.uuid4().hex
        with self._locked(session_id) as directory:
            (directory / "device.json").write_text(
                json.dumps({"device": device, "phone_number": phone_number, "valid": True})
            )
        return device

    def device_valid(self, session_id: str, device: str) -> bool:
        with self._locked(session_id) as directory:
            path = directory / "device.json"
            record = json.loads(path.read_text()) if path.exists() else {}
        return record.get("device") == device and record.get("valid", False)

    def unlink(self, session_id: str) -> None:
        with self._locked(session_id) as directory:
            self._update(directory / "device.json", valid=False)

    @staticmethod
    def _update(path: Path, **changes: object) -> dict | None:
        """Change fields of the JSON record at `path` (under the session's lock); the record
        as it was, or None when there is none."""
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, **changes}))
        return record

    @staticmethod
    def _append(directory: Path, event: str, **fields: object) -> None:
        with open(directory / "log.jsonl", "a") as log:
            log.write(json.dumps({"at": time.time(), "event": event, **fields}) + "\n")

    def blocklist(self, session_id: str) -> list[str]:
        """The account's blocked JIDs (the servers keep them: they outlive every connection)."""
        with self._locked(session_id) as directory:
            path = directory / "blocklist.json"
            return json.loads(path.read_text()) if path.exists() else []

    def block(self, session_id: str, jid: str, action: str) -> list[str]:
        with self._locked(session_id) as directory:
            path = directory / "blocklist.json"
            blocked = json.loads(path.read_text()) if path.exists() else []
            blocked = [j for j in blocked if j != jid] + ([jid] if action == "block" else [])
            path.write_text(json.dumps(blocked))
            self._append(directory, action, jid=jid)
        return blocked

    def log(self, session_id: str, event: str, **fields: object) -> None:
        with self._locked(session_id) as directory:
            self._append(directory, event, **fields)

    def open_connection(self, session_id: str, worker: str, device: str) -> str:
        """A connection with the session's credentials. Like WhatsApp, the server keeps one: a
        connection already open is replaced (and logged as disconnected) at this moment."""
        connection = uuid.uuid4().hex
        with self._locked(session_id) as directory:
            current = directory / "connection.json"
            if current.exists():
                previous = json.loads(current.read_text())
                self._append(
                    directory,
                    "disconnect",
                    worker=previous["worker"],
                    connection=previous["connection"],
                    reason="replaced by another connection",
                )
            current.write_text(json.dumps({"connection": connection, "worker": worker}))
            self._append(directory, "connect", worker=worker, device=device, connection=connection)
        return connection

    def close_connection(self, session_id: str, connection: str, worker: str, reason: str) -> bool:
        """Close `connection` if the server still has it open; False when it was replaced."""
        with self._locked(session_id) as directory:
            current = directory / "connection.json"
            if not current.exists() or json.loads(current.read_text())["connection"] != connection:
                return False
            current.unlink()
            self._append(
                directory, "disconnect", worker=worker, connection=connection, reason=reason
            )
        return True

    def connection_stamp(self, session_id: str) -> int:
        """Changes whenever the servers' record of the open connection does (no lock: a cheap
        look before the locked one)."""
        try:
            return (self._dir(session_id) / "connection.json").stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def connection_current(self, session_id: str, connection: str) -> bool:
        with self._locked(session_id) as directory:
            current = directory / "connection.json"
            return current.exists() and json.loads(current.read_text())["connection"] == connection

    def ban(self, session_id: str, expire_seconds: int) -> None:
        with self._locked(session_id) as directory:
            (directory / "ban.json").write_text(json.dumps({"until": time.time() + expire_seconds}))

    def banned_for(self, session_id: str) -> int:
        """Seconds the session's number stays banned (0: not banned)."""
        path = self._dir(session_id) / "ban.json"
        until = json.loads(path.read_text())["until"] if path.exists() else 0
        return max(0, round(until - time.time()))

    def freeze(self, session_id: str) -> None:
        """The open connection goes half-open: it looks up, and nothing comes through it."""
        with self._locked(session_id) as directory:
            record = self._update(directory / "connection.json", frozen=True)
            if record is not None:
                self._append(directory, "frozen", connection=record["connection"])

    def connection_answers(self, session_id: str, connection: str) -> bool:
        with self._locked(session_id) as directory:
            current = directory / "connection.json"
            record = json.loads(current.read_text()) if current.exists() else {}
        return record.get("connection") == connection and not record.get("frozen")

    def read_log(self, session_id: str) -> list[dict]:
        path = self.root / session_id / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def deliver(self, session_id: str, message_id: str, entry: dict) -> bool:
        """Put a message on the simulated phone; False when that id was delivered before."""
        with self._locked(session_id) as directory:
            seen = directory / "delivered.txt"
            if seen.exists() and message_id in seen.read_text().split():
                return False
            with open(seen, "a") as ids:
                ids.write(message_id + "\n")
            with open(directory / "phone.jsonl", "a") as phone:
                phone.write(json.dumps({"at": time.time(), "id": message_id, **entry}) + "\n")
        return True

    def phone_messages(self, session_id: str) -> list[dict]:
        """What the simulated phones received from this session, in order."""
        path = self.root / session_id / "phone.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def temporary_ban(session_id: str, expire_seconds: int) -> Disconnected:
    return Disconnected(
        session_id,
        reason=f"temporarily banned; the ban ends in {expire_seconds} s",
        will_reconnect=False,
        code="temporary_ban",
    )


@dataclass
class _Session:
    id: str
    auth_dir: Path
    state: str = "linking"  # linking | connected | closed
    phone_number: str = ""
    device: str = ""
    pair_phone: str = ""
    connection: str = ""  # the simulated server's id for our open connection
    frozen: bool = False  # the connection went half-open (`freeze`)
    receipts: str = "normal"  # one of RECEIPT_MODES
    held: list[Receipt] = field(default_factory=list)  # receipts waiting for a reconnect
    tasks: set[asyncio.Task] = field(default_factory=set)
    # Presence: whether we show ourselves online, and whose online/offline changes we asked for.
    available: bool = False
    subscribed: set[str] = field(default_factory=set)


class SandboxEngine(Engine):
    name = "sandbox"
    accepts_message_ids = True

    def __init__(
        self, world: SandboxWorld, *, worker: str = "", timings: SandboxTimings | None = None
    ) -> None:
        super().__init__()
        self.world = world
        self.worker = worker
        self.timings = timings or SandboxTimings()
        self._sessions: dict[str, _Session] = {}

    # --- helpers ------------------------------------------------------------------------------

    def _session(self, session_id: str, *, connected: bool = False) -> _Session:
        return started_session(self._sessions, session_id, connected=connected)

    def _close(self, session: _Session) -> None:
        session.state = "closed"
        current = asyncio.current_task()
        for task in list(session.tasks):
            if task is not current:
                task.cancel()
        self._sessions.pop(session.id, None)

    def _connect(self, session: _Session) -> None:
        session.state, session.frozen = "connected", False
        session.available, session.subscribed = False, set()  # per connection, as on WhatsApp
        session.connection = self.world.open_connection(session.id, self.worker, session.device)
        self.emit(
            Connected(
                session.id,
                jid=phone_to_jid(session.phone_number),
                phone_number=session.phone_number,
                push_name="Sandbox",
            )
        )
        held, session.held = session.held, []
        for receipt in held:  # what the phones sent while we were away
            self.emit(receipt)
        spawn_into(session.tasks, self._watch_connection(session, session.connection))

    async def _watch_connection(self, session: _Session, connection: str) -> None:
        """WhatsApp pushes a stream error the moment another connection takes the session. Only
        a change of the servers' record is read under the lock (a worker holds many sessions)."""
        seen = self.world.connection_stamp(session.id)
        while session.state == "connected" and session.connection == connection:
            await asyncio.sleep(self.timings.push_poll)
            if session.state != "connected" or session.connection != connection:
                return
            stamp = self.world.connection_stamp(session.id)
            if stamp == seen:
                continue
            seen = stamp
            if not self.world.connection_current(session.id, connection):
                self._close(session)
                self.emit(StreamReplaced(session.id))
                return

    # --- commands -----------------------------------------------------------------------------

    async def start(self, session_id: str, auth_dir: Path) -> None:
        if session_id in self._sessions:
            raise EngineError(
                f"session {session_id} is already started", permanent=True, code="already_started"
            )
        session = _Session(session_id, Path(auth_dir))
        self._sessions[session_id] = session
        store = KeyValueStore(session.auth_dir)
        device, phone = store.get("device"), store.get("phone_number")
        if device and phone:
            if not self.world.device_valid(session_id, device):
                # Unlinked while we were away: the keys are worthless, as on WhatsApp.
                delete_store(session.auth_dir)
                self._close(session)
                self.emit(LoggedOut(session_id, reason="device was unlinked"))
                return
            session.device, session.phone_number = device, phone
            banned = self.world.banned_for(session_id)
            if banned > 0:
                self._close(session)
                self.emit(temporary_ban(session_id, banned))
                return
            spawn_into(session.tasks, self._connect_later(session))
            return
        spawn_into(session.tasks, self._rotate_qr(session))

    async def _connect_later(self, session: _Session) -> None:
        await asyncio.sleep(self.timings.connect_delay)
        if session.state != "closed":
            self._connect(session)

    async def _rotate_qr(self, session: _Session) -> None:
        t = self.timings
        for number in range(1 + t.qr_rotations):
            valid = t.qr_first if number == 0 else t.qr_next
            # The simulated ref carries its issue time (ms), for bench/qr_latency.py.
            issued = int(time.time() * 1000)
            code = f"2@sandbox,{session.id},{number},{issued},{secrets.token_urlsafe(24)}"
            self.emit(QrCode(session.id, code=code, expires_in=valid))
            await asyncio.sleep(valid)
            if session.state != "linking":
                return
        self._end_linking(session, "the QR code was not scanned in time")

    def _end_linking(self, session: _Session, reason: str) -> None:
        self._close(session)
        self.emit(Disconnected(session.id, reason=reason, will_reconnect=False, code="qr_timeout"))

    async def stop(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        if session.state == "connected":
            self.world.close_connection(session_id, session.connection, self.worker, "stop")
        self._close(session)

    async def logout(self, session_id: str) -> None:
        session = self._session(session_id)
        if session.device:
            self.world.unlink(session_id)
        self.world.log(session_id, "logout", worker=self.worker)
        if session.connection:
            self.world.close_connection(session_id, session.connection, self.worker, "logout")
        delete_store(session.auth_dir)
        self._close(session)
        self.emit(LoggedOut(session_id, reason="logged out"))

    async def send(self, session_id: str, message: OutboundMessage) -> SendResult:
        session = self._session(session_id, connected=True)
        if session.frozen:
            raise EngineError("timed out waiting for message send response", code="send_timeout")
        if not self.world.connection_current(session_id, session.connection):
            # The server replaced our connection (another worker connected): like whatsmeow, we
            # learn it now, and never reconnect by ourselves.
            self._close(session)
            self.emit(StreamReplaced(session_id))
            raise EngineError("the connection was replaced", code="not_connected")
        if jid_user(message.to).endswith(NOT_ON_WHATSAPP_SUFFIX):
            raise EngineError(
                f"{jid_user(message.to)} is not on WhatsApp", permanent=True, code="not_on_whatsapp"
            )
        entry: dict[str, object] = {
            "to": message.to,
            "type": message.type,
            "text": message.text,
            "caption": message.caption,
            "reply_to": message.reply_to,
            "reaction": message.reaction,
            "worker": self.worker,
        }
        if message.reply_to:
            # The quoted (or reacted-to) message's key as the recipient's phone gets it
            # (whatsmeow BuildMessageKey): from-me for ours, its sender inside a group.
            entry["key"] = {
                "id": message.reply_to,
                "from_me": message.reply_to_from_me,
                "participant": ""
                if message.reply_to_from_me or not is_group(message.to)
                else message.reply_to_sender or message.to,
            }
            entry["quoted_text"] = message.reply_to_text
        if message.media is not None:
            data = Path(message.media.path).read_bytes()
            entry["media"] = {
                "mime_type": message.media.mime_type,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "filename": message.media.filename,
            }
        if message.location is not None:
            entry["location"] = [message.location.latitude, message.location.longitude]
        if message.contact is not None:
            entry["contact"] = message.contact.name
        if self.world.deliver(session_id, message.id, entry):
            spawn_into(session.tasks, self._receipts(session, message))
        return SendResult(wa_message_id=message.id, timestamp=time.time())

    async def _receipts(self, session: _Session, message: OutboundMessage) -> None:
        t, mode = self.timings, session.receipts
        steps: list[tuple[ReceiptStatus, float]] = [
            ("delivered", t.delivered_after),
            ("read", t.read_after - t.delivered_after),
        ]
        if message.type == "voice":
            steps.append(("played", t.played_after))
        if mode == "missing":  # read receipts off on the phone: never more than delivered
            steps = steps[:1]
        elif mode == "out_of_order":  # the read receipt overtakes the delivery receipt
            steps = [
                (status, delay) for (status, _), (_, delay) in zip(steps[::-1], steps, strict=True)
            ]
        for status, delay in steps:
            await asyncio.sleep(max(0.0, delay))
            receipt = Receipt(
                session.id,
                chat=message.to,
                message_ids=(message.id,),
                status=status,
                timestamp=time.time(),
            )
            if mode == "after_reconnect" or session.state != "connected" or session.frozen:
                session.held.append(receipt)  # comes with the next connection
                continue
            self.emit(receipt)
            if mode == "duplicated":
                self.emit(receipt)

    async def request_pair_code(self, session_id: str, phone_number: str) -> str:
        session = self._session(session_id)
        if session.state != "linking":
            raise EngineError(
                "the session is already linked", permanent=True, code="already_linked"
            )
        session.pair_phone = phone_number
        code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTVWXYZ23456789") for _ in range(8))
        code = f"{code[:4]}-{code[4:]}"
        self.emit(PairCode(session_id, code=code, expires_in=self.timings.pair_code_valid))
        return code

    async def check_numbers(self, session_id: str, phone_numbers: list[str]) -> list[NumberCheck]:
        self._session(session_id, connected=True)
        return [
            NumberCheck(
                number,
                on_whatsapp=not number.endswith(NOT_ON_WHATSAPP_SUFFIX),
                jid="" if number.endswith(NOT_ON_WHATSAPP_SUFFIX) else phone_to_jid(number),
            )
            for number in phone_numbers
        ]

    async def mark_read(
        self, session_id: str, chat: str, message_ids: list[str], sender: str = ""
    ) -> None:
        self._session(session_id, connected=True)
        self.world.log(session_id, "mark_read", chat=chat, message_ids=list(message_ids))

    async def set_presence(self, session_id: str, state: PresenceState) -> None:
        session = self._session(session_id, connected=True)
        session.available = state == "available"
        self.world.log(session_id, "presence", state=state)

    async def set_chat_presence(self, session_id: str, chat: str, state: ChatState) -> None:
        self._session(session_id, connected=True)
        self.world.log(session_id, state, chat=chat)  # typing, recording or paused

    async def subscribe_presence(self, session_id: str, chat: str) -> None:
        session = self._session(session_id, connected=True)
        session.subscribed.add(chat)
        self.world.log(session_id, "subscribe_presence", chat=chat)

    async def blocklist(self, session_id: str) -> list[Blocked]:
        self._session(session_id, connected=True)
        return [Blocked(jid, jid_to_phone(jid)) for jid in self.world.blocklist(session_id)]

    async def update_blocklist(
        self, session_id: str, jid: str, action: BlockAction
    ) -> list[Blocked]:
        self._session(session_id, connected=True)
        if is_group(jid) or jid_user(jid).endswith(NOT_ON_WHATSAPP_SUFFIX):
            # whatsmeow UpdateBlocklist needs the user's LID, which WhatsApp knows only for
            # users on WhatsApp (user.go).
            raise EngineError(f"no LID found for {jid} from server", code="not_on_whatsapp")
        blocked = self.world.block(session_id, jid, action)
        return [Blocked(j, jid_to_phone(j)) for j in blocked]

    async def download(self, session_id: str, media: InboundMedia, into: Path) -> int:
        self._session(session_id, connected=True)
        try:
            data = base64.b64decode(media.ref["data"])
        except (KeyError, ValueError) as exc:
            raise EngineError(
                "the media cannot be downloaded", permanent=True, code="media_unavailable"
            ) from exc
        Path(into).write_bytes(data)
        return len(data)

    async def probe(self, session_id: str) -> None:
        session = self._session(session_id, connected=True)
        if not self.world.connection_answers(session_id, session.connection):
            raise EngineError("WhatsApp did not answer the probe", code="probe_failed")

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.stop(session_id)

    # --- what the simulated phone does (the sandbox controls) --------------------------------

    async def scan(self, session_id: str, phone_number: str = "") -> None:
        """The phone scans the QR code (or enters the pairing code): the session is linked."""
        session = self._session(session_id)
        phone_number = phone_number or session.pair_phone
        if session.state != "linking":
            raise EngineError(
                "the session is not showing a QR code", permanent=True, code="not_linking"
            )
        if not phone_number:
            raise EngineError(
                "a phone number is needed to link", permanent=True, code="phone_number_required"
            )
        session.device = self.world.link(session_id, phone_number)
        session.phone_number = phone_number
        KeyValueStore(session.auth_dir).set(device=session.device, phone_number=phone_number)
        for task in list(session.tasks):
            task.cancel()
        self._connect(session)

    async def receive(
        self,
        session_id: str,
        *,
        sender_phone: str,
        type: MessageKind = "text",
        text: str = "",
        media: bytes | None = None,
        mime_type: str = "",
        filename: str = "",
        as_lid: bool = False,
        resolvable: bool = True,
        from_me: bool = False,
        group: str = "",
        wa_message_id: str = "",
    ) -> InboundMessage:
        """A contact sends the session a message. `as_lid` hides the sender's number behind a
        @lid JID (as WhatsApp does more and more); the engine resolves the number unless
        `resolvable` is False (no mapping known yet). `from_me`: the phone itself sent it to
        `sender_phone` (every linked device sees it)."""
        session = self._session(session_id, connected=True)
        if session.frozen:
            raise EngineError("nothing comes through a frozen connection", code="not_connected")
        sender_jid = phone_to_jid(sender_phone)
        if as_lid:
            sender_jid = f"{int(hashlib.sha256(sender_phone.encode()).hexdigest()[:12], 16)}@lid"
        inbound_media = None
        if media is not None:
            inbound_media = InboundMedia(
                mime_type=mime_type or "application/octet-stream",
                filename=filename,
                size=len(media),
                sha256=hashlib.sha256(media).hexdigest(),
                ref={"data": base64.b64encode(media).decode()},
            )
        own = phone_to_jid(session.phone_number)
        message = InboundMessage(
            wa_message_id=wa_message_id or "SB" + secrets.token_hex(10).upper(),
            chat=group or (phone_to_jid(sender_phone) if from_me else sender_jid),
            sender=own if from_me else sender_jid,
            type=type,
            timestamp=time.time(),
            sender_phone=(
                jid_to_phone(own)
                if from_me
                else jid_to_phone(phone_to_jid(sender_phone))
                if resolvable or not as_lid
                else ""
            ),
            push_name="Sandbox" if from_me else "Contact",
            from_me=from_me,
            is_group=bool(group),
            text=text if type == "text" else "",
            caption=text if type != "text" else "",
            media=inbound_media,
        )
        self.emit(MessageReceived(session_id, message))
        return message

    async def presence(
        self,
        session_id: str,
        *,
        sender_phone: str,
        state: str,
        group: str = "",
        last_seen: float | None = None,
    ) -> bool:
        """A contact comes online, goes offline, or types (records, stops) in a chat with the
        session (its 1:1 chat, or `group`). As WhatsApp does, nothing reaches a session that does
        not show itself online, and online/offline only one that subscribed to the contact
        (whatsmeow events.go, Presence and ChatPresence). Returns whether the session got it."""
        session = self._session(session_id, connected=True)
        if state not in PRESENCE_STATES:
            raise EngineError(f"unknown presence {state!r}", permanent=True, code="bad_request")
        sender = phone_to_jid(sender_phone)
        if not session.available:
            return False
        if state in ("available", "unavailable"):
            if sender not in session.subscribed:
                return False
            chat = sender
        else:
            chat, last_seen = group or sender, None
        self.emit(
            Presence(
                session_id,
                chat=chat,
                sender=sender,
                state=state,
                last_seen=last_seen,
                sender_phone=jid_to_phone(sender),
            )
        )
        return True

    async def block_from_phone(
        self, session_id: str, *, phone_number: str, change: BlockAction
    ) -> None:
        """The account's phone blocks or unblocks (`change`) a contact: the servers tell the
        session."""
        self._session(session_id, connected=True)
        if change not in ("block", "unblock"):
            raise EngineError(f"unknown change {change!r}", permanent=True, code="bad_request")
        jid = phone_to_jid(phone_number)
        self.world.block(session_id, jid, change)
        changed = BlocklistChange(jid=jid, action=change, phone_number=jid_to_phone(jid))
        self.emit(BlocklistChanged(session_id, changes=(changed,)))

    async def drop_connection(self, session_id: str) -> None:
        """The network drops; like whatsmeow, the engine reconnects by itself. While linking, the
        codes just stop coming (and linking ends when the current one expires)."""
        session = self._session(session_id)
        if session.state == "linking":
            for task in list(session.tasks):
                task.cancel()
            spawn_into(session.tasks, self._linking_dropped(session))
            return
        session = self._session(session_id, connected=True)
        self.world.close_connection(session_id, session.connection, self.worker, "network")
        session.state = "reconnecting"
        self.emit(Disconnected(session_id, reason="connection lost", will_reconnect=True))
        spawn_into(session.tasks, self._reconnect(session))

    async def _linking_dropped(self, session: _Session) -> None:
        await asyncio.sleep(self.timings.qr_next)
        if session.state == "linking":
            self._end_linking(session, "the connection dropped while linking")

    async def _reconnect(self, session: _Session) -> None:
        await asyncio.sleep(self.timings.reconnect_delay)
        if session.state == "reconnecting":
            self._connect(session)

    async def remote_logout(self, session_id: str) -> None:
        """The user removes the linked device on the phone."""
        session = self._session(session_id)
        self.world.unlink(session_id)
        self.world.log(session_id, "remote_logout", worker=self.worker)
        if session.connection:
            self.world.close_connection(session_id, session.connection, self.worker, "unlinked")
        delete_store(session.auth_dir)
        self._close(session)
        self.emit(LoggedOut(session_id, reason="unlinked from the phone"))

    async def ban(self, session_id: str, expire_seconds: int = 3600) -> None:
        """WhatsApp bans the number for a while: the connection closes, logins are refused."""
        session = self._session(session_id)
        self.world.ban(session_id, expire_seconds)
        if session.connection:
            self.world.close_connection(session_id, session.connection, self.worker, "banned")
        self._close(session)
        self.emit(temporary_ban(session_id, expire_seconds))

    async def outdate(self, session_id: str) -> None:
        """WhatsApp refuses this client version (405)."""
        session = self._session(session_id)
        if session.connection:
            self.world.close_connection(session_id, session.connection, self.worker, "outdated")
        self._close(session)
        self.emit(
            Disconnected(
                session_id,
                reason="WhatsApp refuses this client version (405)",
                will_reconnect=False,
                code="client_outdated",
            )
        )

    async def receipts(self, session_id: str, mode: str) -> None:
        """How the phones' receipts come from now on (RECEIPT_MODES)."""
        if mode not in RECEIPT_MODES:
            raise EngineError(f"unknown receipt mode {mode!r}", permanent=True, code="bad_request")
        self._session(session_id).receipts = mode

    async def freeze(self, session_id: str) -> None:
        """The connection goes silent without closing (a zombie: nothing comes, nothing goes)."""
        session = self._session(session_id, connected=True)
        self.world.freeze(session_id)
        session.frozen = True

    async def replace(self, session_id: str) -> None:
        """Another connection with the same credentials takes over this session."""
        session = self._session(session_id, connected=True)
        self.world.close_connection(
            session_id, session.connection, self.worker, "replaced by another connection"
        )
        self._close(session)
        self.emit(StreamReplaced(session_id))

    def status(self, session_id: str) -> str:
        """`linking`, `connected`, `reconnecting`, or `stopped` when this engine does not run it."""
        session = self._sessions.get(session_id)
        return session.state if session else "stopped"
