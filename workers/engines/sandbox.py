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
  off: `delivered` only), duplicated, out of order, or held until the next reconnect;
- groups with WhatsApp's rules: roles (the creator is super admin; only admins add, remove,
  promote, demote, change the settings or see the invite link; anyone edits the info unless the
  group is locked), per-participant answers (numbers ending in 9999 take only an invite), invite
  links that a reset revokes, pictures, and the notifications every participant gets; the other
  members' doings are a control (`group_event`).

What the simulated WhatsApp servers know is shared by every process on the machine through a
directory (`SandboxWorld`): which devices are linked, a log of who connected from which worker and
when, what each simulated phone received (mentions included), and the groups with their history of
changes. Tests read it to check for overlapping owners and duplicate deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import fcntl
import functools
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from gateway.core.jids import (
    INVITE_LINK_PREFIX,
    is_group,
    is_lid,
    jid_to_phone,
    jid_user,
    phone_to_jid,
)
from workers.engines.base import (
    BlockAction,
    Blocked,
    BlocklistChange,
    BlocklistChanged,
    ChatState,
    Connected,
    ContactInfo,
    Disconnected,
    Engine,
    EngineError,
    Event,
    Group,
    GroupCreated,
    GroupJoined,
    GroupMember,
    GroupParticipantsChanged,
    HistorySynced,
    InboundMedia,
    InboundMessage,
    LoggedOut,
    MessageEdited,
    MessageKind,
    MessageReceived,
    MessageRevoked,
    NumberCheck,
    OutboundMessage,
    PairCode,
    ParticipantAction,
    ParticipantResult,
    Poll,
    PollVote,
    Presence,
    PresenceState,
    Profile,
    QrCode,
    Receipt,
    ReceiptStatus,
    SendResult,
    StreamReplaced,
    spawn_into,
    started_session,
)
from workers.engines.sandbox_groups import (
    GROUP_EVENTS,
    GROUP_JID_PATTERN,
    GROUP_SIZE_MAX,
    INVITE_PATTERN,
    NOT_ON_WHATSAPP_SUFFIX,
    PARTICIPANT_ACTIONS,
    GroupBook,
    change_info,
    change_participant,
    check_info,
    group_of,
    group_updated,
    invite_code,
    is_admin,
    member_of,
    new_group,
    note,
    number_jid,
    refused,
    require_admin,
    user_jid,
    visible,
)
from workers.engines.store import KeyValueStore, delete_store

PRESENCE_STATES = ("available", "unavailable", "typing", "recording", "paused")
HISTORY_BATCH = 500  # messages per HistorySynced event, as the neonize engine batches them
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

    def profile(self, session_id: str) -> dict:
        """The account's name, about text and picture id (the servers keep them)."""
        with self._locked(session_id) as directory:
            path = directory / "profile.json"
            return json.loads(path.read_text()) if path.exists() else {}

    def set_profile(self, session_id: str, **changes: str) -> dict:
        with self._locked(session_id) as directory:
            path = directory / "profile.json"
            record = {**(json.loads(path.read_text()) if path.exists() else {}), **changes}
            path.write_text(json.dumps(record))
        return record

    def learn_lid(self, session_id: str, lid: str, phone_number: str) -> None:
        """The session's store learns whose number a @lid hides (from a message, a lookup)."""
        with self._locked(session_id) as directory:
            path = directory / "lids.json"
            known = json.loads(path.read_text()) if path.exists() else {}
            path.write_text(json.dumps({**known, lid: phone_number}))

    def phone_of_lid(self, session_id: str, lid: str) -> str:
        with self._locked(session_id) as directory:
            path = directory / "lids.json"
            return (json.loads(path.read_text()) if path.exists() else {}).get(lid, "")

    # Groups live on the servers, not with a session: every account in them sees the same record.

    @contextmanager
    def groups_locked(self) -> Iterator[GroupBook]:
        """The servers' groups, under one lock for all of them: read, check and change them
        inside the block, so that another process cannot change them in between."""
        directory = self.root / "groups"
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield GroupBook(directory)

    def group(self, jid: str) -> dict | None:
        """A group's record as the servers keep it (with its `history`), or None."""
        with self.groups_locked() as book:
            return book.get(jid)


def temporary_ban(session_id: str, expire_seconds: int) -> Disconnected:
    return Disconnected(
        session_id,
        reason=f"temporarily banned; the ban ends in {expire_seconds} s",
        will_reconnect=False,
        code="temporary_ban",
    )


def sandbox_lid(phone_number: str) -> str:
    """The @lid that hides a sandbox contact's number (stable, made up)."""
    return f"{int(hashlib.sha256(phone_number.encode()).hexdigest()[:12], 16)}@lid"


def picture_url(picture_id: str) -> str:
    """Where a sandbox picture would be: a reserved domain that never resolves (RFC 2606)."""
    return f"https://pictures.sandbox.invalid/{picture_id}.jpg"


def _jpeg(jpeg_base64: str) -> bytes:
    try:
        data = base64.b64decode(jpeg_base64, validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data.startswith(b"\xff\xd8\xff"):
        raise refused("invalid_image", "the given data is not a valid image")
    return data


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
                push_name=self.world.profile(session.id).get("name", "Sandbox"),
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
        if message.mentions:
            entry["mentions"] = list(message.mentions)
        if message.preview is not None:
            entry["preview"] = dataclasses.asdict(message.preview) | {
                "thumbnail": bool(message.preview.thumbnail)
            }
        secret = ""
        if message.poll is not None:  # with the secret its votes are encrypted with, as WhatsApp
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            entry["poll"] = dataclasses.asdict(message.poll) | {"secret": secret}
        if self.world.deliver(session_id, message.id, entry):
            spawn_into(session.tasks, self._receipts(session, message))
        return SendResult(wa_message_id=message.id, timestamp=time.time(), secret=secret)

    async def _protocol_message(self, session_id: str, chat: str, entry: dict) -> SendResult:
        """An edit or a deletion for everyone reaches the phones as a message of its own."""
        session = self._session(session_id, connected=True)
        if session.frozen:
            raise EngineError("timed out waiting for message send response", code="send_timeout")
        wa_message_id = "SB" + secrets.token_hex(10).upper()
        blank = {"text": "", "caption": "", "reaction": "", "reply_to": ""}
        self.world.deliver(
            session_id, wa_message_id, {"to": chat, "worker": self.worker, **blank, **entry}
        )
        return SendResult(wa_message_id=wa_message_id, timestamp=time.time())

    async def edit_message(
        self, session_id: str, chat: str, wa_message_id: str, text: str, kind: str = "text"
    ) -> SendResult:
        key = {"id": wa_message_id, "from_me": True, "participant": ""}
        return await self._protocol_message(
            session_id, chat, {"type": "edit", "text": text, "key": key, "kind": kind}
        )

    async def revoke_message(
        self, session_id: str, chat: str, wa_message_id: str, sender: str = ""
    ) -> SendResult:
        session = self._session(session_id, connected=True)
        own = phone_to_jid(session.phone_number)
        if sender and sender != own and is_group(chat):
            # Someone else's message: only a group's admins delete those for everyone.
            with self.world.groups_locked() as book:
                record = book.get(chat)
                if record is None or not is_admin(record, own):
                    raise refused("not_admin", "only a group's admins delete others' messages")
        key = {"id": wa_message_id, "from_me": not sender or sender == own, "participant": sender}
        return await self._protocol_message(session_id, chat, {"type": "revoke", "key": key})

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

    # --- groups -------------------------------------------------------------------------------

    def _group_session(self, session_id: str) -> str:
        """The session's own JID, for a group query (which a frozen connection never answers)."""
        session = self._session(session_id, connected=True)
        if session.frozen:
            raise EngineError("WhatsApp did not answer the query", code="timeout")
        return phone_to_jid(session.phone_number)

    def _tell(self, audience: Iterable[str], event_for: Callable[[str, str], Event]) -> None:
        """WhatsApp notifies every participant of a group's change: each connected session of
        this engine whose number is in `audience` gets `event_for(its id, its own JID)`."""
        audience = set(audience)
        for session in list(self._sessions.values()):
            if session.state != "connected" or session.frozen or not session.phone_number:
                continue
            own = phone_to_jid(session.phone_number)
            if own in audience:
                self.emit(event_for(session.id, own))

    def _tell_info(self, record: dict, by: str, changed: dict[str, Any]) -> None:
        """One notification per change, as WhatsApp sends one for each change it is asked for
        (whatsmeow sends the subject, the description, announce and locked in IQs of their
        own: group.go)."""
        for name, value in changed.items():
            change = functools.partial(group_updated, record["jid"], by, {name: value})
            self._tell(record["participants"], change)

    def _tell_participants(
        self,
        record: dict,
        before: Iterable[str],
        action: ParticipantAction,
        members: list[GroupMember],
        by: str,
        *,
        reason: str = "",
    ) -> None:
        """Who joined learns of the group (`GroupJoined`, for `reason`); everyone in it before or
        after the change gets the change."""
        if not members:
            return
        group = group_of(record)
        joined = {member.jid for member in members} if action == "add" else set()

        def event_for(session_id: str, own: str) -> Event:
            if own in joined:
                return GroupJoined(
                    session_id, group, by=by, by_phone=jid_to_phone(by), reason=reason
                )
            return GroupParticipantsChanged(
                session_id, group.jid, action, tuple(members), by=by, by_phone=jid_to_phone(by)
            )

        self._tell({*before, *record["participants"]}, event_for)

    # --- contacts and the profile ----------------------------------------------------------

    async def contact(self, session_id: str, jid: str) -> ContactInfo:
        """A sandbox contact is on WhatsApp unless the number ends in 0000, is a business when
        it ends in 5555, and has a name, an about text and a picture. A lookup by number
        teaches the store the contact's @lid (as whatsmeow's usync does)."""
        self._session(session_id, connected=True)
        if is_lid(jid):
            phone = self.world.phone_of_lid(session_id, jid)
            if not phone:
                return ContactInfo(jid, lid=jid, on_whatsapp=True)
        else:
            phone = jid_to_phone(jid)
            if not phone:
                raise refused("bad_request", f"{jid!r} is not a user's JID")
            if phone.endswith(NOT_ON_WHATSAPP_SUFFIX):
                return ContactInfo(jid, phone_number=phone)
        lid = sandbox_lid(phone)
        self.world.learn_lid(session_id, lid, phone)
        digits = phone.lstrip("+")
        return ContactInfo(
            jid=phone_to_jid(phone),
            lid=lid,
            phone_number=phone,
            on_whatsapp=True,
            push_name=f"Contact {digits[-4:]}",
            about="Hey there! I am using WhatsApp.",
            picture_url=picture_url(digits),
            is_business=digits.endswith("5555"),
        )

    async def phone_of_lid(self, session_id: str, lid: str) -> str:
        self._session(session_id, connected=True)
        return self.world.phone_of_lid(session_id, lid)

    def _profile(self, session: _Session) -> Profile:
        record = self.world.profile(session.id)
        return Profile(
            jid=phone_to_jid(session.phone_number),
            phone_number=session.phone_number,
            name=record.get("name", "Sandbox"),
            about=record.get("about", ""),
            picture_url=picture_url(record["picture"]) if record.get("picture") else None,
        )

    async def profile(self, session_id: str) -> Profile:
        return self._profile(self._session(session_id, connected=True))

    async def update_profile(
        self, session_id: str, *, name: str | None = None, about: str | None = None
    ) -> Profile:
        session = self._session(session_id, connected=True)
        changes = {k: v for k, v in (("name", name), ("about", about)) if v is not None}
        if "name" in changes and not changes["name"].strip():
            raise refused("bad_request", "a push name cannot be empty")
        self.world.set_profile(session_id, **changes)
        self.world.log(session_id, "profile", **changes)
        return self._profile(session)

    async def set_profile_picture(self, session_id: str, jpeg_base64: str) -> str:
        self._session(session_id, connected=True)
        _jpeg(jpeg_base64)
        picture = str(10**9 + secrets.randbelow(9 * 10**9))
        self.world.set_profile(session_id, picture=picture)
        return picture

    async def groups(self, session_id: str) -> list[Group]:
        me = self._group_session(session_id)
        with self.world.groups_locked() as book:
            return [group_of(record) for record in book.all() if me in record["participants"]]

    async def group_info(self, session_id: str, jid: str) -> Group:
        me = self._group_session(session_id)
        with self.world.groups_locked() as book:
            return group_of(visible(book, jid, me))

    async def create_group(
        self, session_id: str, subject: str, participants: list[str]
    ) -> GroupCreated:
        me = self._group_session(session_id)
        check_info(subject, None)
        wanted = [jid for jid in dict.fromkeys(map(user_jid, participants)) if jid != me]
        if len(wanted) >= GROUP_SIZE_MAX:
            raise refused("bad_request", f"a group has at most {GROUP_SIZE_MAX} participants")
        with self.world.groups_locked() as book:
            record = new_group(book.new_jid(), subject, me)
            results = [change_participant(record, me, "add", jid)[0] for jid in wanted]
            book.put(record)
        group = group_of(record)
        self._tell(
            record["participants"],
            lambda session_id, own: GroupJoined(
                session_id,
                group,
                by=me,
                by_phone=jid_to_phone(me),
                reason="created" if own == me else "",
            ),
        )
        return GroupCreated(group, tuple(results))

    async def update_group(
        self,
        session_id: str,
        jid: str,
        *,
        subject: str | None = None,
        description: str | None = None,
        announce: bool | None = None,
        locked: bool | None = None,
    ) -> Group:
        me = self._group_session(session_id)
        check_info(subject, description)
        fields: dict[str, Any] = {"subject": subject, "description": description}
        fields |= {"announce": announce, "locked": locked}
        requested = {name: value for name, value in fields.items() if value is not None}
        with self.world.groups_locked() as book:
            record = visible(book, jid, me)
            changed = change_info(record, me, requested)
            book.put(record)
        self._tell_info(record, me, changed)
        return group_of(record)

    async def set_group_picture(self, session_id: str, jid: str, jpeg_base64: str) -> str:
        me = self._group_session(session_id)
        _jpeg(jpeg_base64)
        with self.world.groups_locked() as book:
            record = visible(book, jid, me)
            if record["locked"]:
                require_admin(record, me, "edit its info")
            record["picture"] = str(10**9 + secrets.randbelow(9 * 10**9))
            note(record, me, "picture", record["picture"])
            book.put(record)
        change = functools.partial(group_updated, record["jid"], me, {"picture": True})
        self._tell(record["participants"], change)  # a `picture` notification to everyone
        return record["picture"]

    async def update_participants(
        self, session_id: str, jid: str, action: ParticipantAction, participants: list[str]
    ) -> list[ParticipantResult]:
        me = self._group_session(session_id)
        if action not in PARTICIPANT_ACTIONS:
            raise refused("bad_request", f"unknown participant action {action!r}")
        targets = list(dict.fromkeys(map(user_jid, participants)))
        if not targets:
            raise refused("bad_request", "no participants given")
        with self.world.groups_locked() as book:
            record = visible(book, jid, me)
            require_admin(record, me, "add, remove, promote or demote participants")
            before = list(record["participants"])
            outcomes = [change_participant(record, me, action, target) for target in targets]
            book.put(record)
        changed = [member for _, member in outcomes if member is not None]
        self._tell_participants(record, before, action, changed, me)
        return [result for result, _ in outcomes]

    async def group_invite_link(self, session_id: str, jid: str, revoke: bool = False) -> str:
        me = self._group_session(session_id)
        with self.world.groups_locked() as book:
            record = visible(book, jid, me)
            require_admin(record, me, "see or reset its invite link")
            if revoke:
                record["revoked_invites"].append(record["invite"])
                record["invite"] = invite_code()
                note(record, me, "invite_revoked", record["revoked_invites"][-1])
                book.put(record)
        return INVITE_LINK_PREFIX + record["invite"]

    async def join_group(self, session_id: str, link: str) -> str:
        me = self._group_session(session_id)
        link = link.strip()
        match = INVITE_PATTERN.fullmatch(link)
        if match is None:
            raise refused("invite_invalid", f"{link!r} is not a group invite link")
        with self.world.groups_locked() as book:
            record, revoked = book.by_invite(match.group(1))
            if record is None and revoked:
                raise refused("invite_revoked", "that group invite link has been revoked")
            if record is None:
                raise refused("invite_invalid", "that group invite link is not valid")
            if me in record["participants"]:  # WhatsApp answers with the group
                return record["jid"]
            before = list(record["participants"])
            record["participants"][me] = "member"
            note(record, me, "join", me)
            book.put(record)
        member = member_of(me, "member")
        self._tell_participants(record, before, "add", [member], me, reason="invite")
        return record["jid"]

    async def leave_group(self, session_id: str, jid: str) -> None:
        me = self._group_session(session_id)
        with self.world.groups_locked() as book:
            record = visible(book, jid, me)
            before = list(record["participants"])
            role = record["participants"].pop(me)
            note(record, me, "leave", me)
            book.put(record)
        self._tell_participants(record, before, "remove", [member_of(me, role)], me)

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
        reply_to: str = "",
        reaction: str = "",
        mentions: tuple[str, ...] | list[str] = (),
        options: tuple[str, ...] | list[str] = (),
        multiple: bool = False,
    ) -> InboundMessage | None:
        """A contact sends the session a message. `as_lid` hides the sender's number behind a
        @lid JID (as WhatsApp does more and more); the engine resolves the number unless
        `resolvable` is False (no mapping known yet). `from_me`: the phone itself sent it to
        `sender_phone` (every linked device sees it). `type` may also be what a contact does to a
        message (`reply_to`, its WhatsApp id): `reaction` (the emoji, "" to remove it), `edit`
        (its new `text`), `revoke` (deleted for everyone) or `poll_vote` (the `options` they choose
        now in the poll `reply_to`; none withdraws the vote); `poll` is a contact's poll (its
        question in `text`, its `options`, `multiple`)."""
        session = self._session(session_id, connected=True)
        if session.frozen:
            raise EngineError("nothing comes through a frozen connection", code="not_connected")
        sender_jid = phone_to_jid(sender_phone)
        if as_lid:
            sender_jid = sandbox_lid(sender_phone)
            if resolvable:  # the store knows whose number it is
                self.world.learn_lid(session_id, sender_jid, sender_phone)
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
        chat = group or (phone_to_jid(sender_phone) if from_me else sender_jid)
        sender = own if from_me else sender_jid
        phone = (
            jid_to_phone(own)
            if from_me
            else jid_to_phone(phone_to_jid(sender_phone))
            if resolvable or not as_lid
            else ""
        )
        if type == "poll_vote":  # what they choose now (none: the vote withdrawn)
            if not reply_to:
                raise refused("bad_request", "a vote names the poll (reply_to)")
            hashes = tuple(hashlib.sha256(o.encode()).hexdigest() for o in options)
            self.emit(
                PollVote(session_id, chat, reply_to, sender, hashes, time.time(), phone, from_me)
            )
            return None
        if type in ("edit", "revoke"):  # a protocol message about `reply_to`
            if not reply_to:
                raise refused("bad_request", f"an {type} names the message (reply_to)")
            at = time.time()
            if type == "edit":
                self.emit(
                    MessageEdited(
                        session_id, chat, sender, reply_to, text, at, phone, from_me=from_me
                    )
                )
            else:
                self.emit(MessageRevoked(session_id, chat, sender, reply_to, at, phone, from_me))
            return None
        if type == "reaction" and not reply_to:
            raise refused("bad_request", "a reaction names the message (reply_to)")
        message = InboundMessage(
            wa_message_id=wa_message_id or "SB" + secrets.token_hex(10).upper(),
            chat=chat,
            sender=sender,
            type=type,
            timestamp=time.time(),
            sender_phone=phone,
            reply_to=reply_to,
            reaction=reaction if type == "reaction" else "",
            mentions=tuple(phone_to_jid(m) if m.startswith("+") else m for m in mentions),
            poll=Poll(text, tuple(options), multiple) if type == "poll" else None,
            push_name="Sandbox" if from_me else f"Contact {sender_phone[-4:]}",
            from_me=from_me,
            is_group=bool(group),
            text=text if type == "text" else "",
            caption=text if type not in ("text", "reaction", "poll") else "",
            media=inbound_media,
        )
        self.emit(MessageReceived(session_id, message))
        return message

    async def history(
        self, session_id: str, *, count: int, chats: int = 10, days: float = 10.0
    ) -> int:
        """WhatsApp sends the phone's history (older messages of `chats` conversations, spread
        over the last `days`) in batches, as it does after linking; returns how many."""
        session = self._session(session_id, connected=True)
        if not 0 < count <= 100_000 or not 0 < chats <= 1000:
            raise refused("bad_request", "count 1..100000, chats 1..1000")
        own, now = phone_to_jid(session.phone_number), time.time()
        batch: list[InboundMessage] = []
        for n in range(count):
            contact = f"+491510{n % chats:07d}"
            mine = n % 3 == 0
            batch.append(
                InboundMessage(
                    wa_message_id=f"SBH{n:08d}{session_id[:8].upper()}",
                    chat=phone_to_jid(contact),
                    sender=own if mine else phone_to_jid(contact),
                    type="text",
                    timestamp=now - days * 86400 * (count - n) / count,
                    sender_phone=session.phone_number if mine else contact,
                    from_me=mine,
                    text=f"history {n}",
                )
            )
            if len(batch) == HISTORY_BATCH or n == count - 1:
                progress = round(100 * (n + 1) / count)
                self.emit(HistorySynced(session_id, tuple(batch), "RECENT", progress))
                batch = []
        return count

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

    async def group_event(
        self,
        session_id: str,
        *,
        group: str,
        event: str,
        participant: str = "",
        by: str = "",
        value: str = "",
    ) -> None:
        """Someone in `group` (a JID) changes it, by WhatsApp's rules; `participant` and `by` are
        numbers (`by` may be the session's own, for its phone). What they do is `event` (the
        control's `action`), one of GROUP_EVENTS:

        - `join`: `by` adds the session's number (creating the group, with subject `value` or
          "Group" and `by` its creator, when there is none);
        - `leave`: `participant` leaves;
        - `add`, `remove`, `promote`, `demote`: `by`, an admin, does it to `participant` (the
          session's number too: removed, it no longer sees the group);
        - `subject`, `description`: `by` sets it to `value`; `announce`, `locked`: `by`, an
          admin, sets it to `value` "true" or "false".

        Every connected session here that is in the group gets the notification WhatsApp sends
        (nothing when nothing changes), and the group's history has the change. What WhatsApp
        would refuse (`by` not in the group or not an admin, adding someone who cannot be added,
        …) is `bad_request`.
        """
        session = self._session(session_id, connected=True)
        try:
            self._group_event(
                phone_to_jid(session.phone_number), group, event, participant, by, value
            )
        except EngineError as exc:
            raise refused("bad_request", str(exc)) from exc

    def _group_event(
        self, me: str, group: str, action: str, participant: str, by: str, value: str
    ) -> None:
        if action not in GROUP_EVENTS:
            raise refused("bad_request", f"unknown group action {action!r}")
        if not GROUP_JID_PATTERN.fullmatch(group):
            raise refused("bad_request", f"{group!r} is not a group's JID")
        target = me if action == "join" else number_jid(participant) if participant else ""
        actor = target if action == "leave" else number_jid(by) if by else ""
        if not target and action in ("leave", *PARTICIPANT_ACTIONS):
            raise refused("bad_request", f"{action} needs the participant's number")
        if not actor:
            raise refused("bad_request", f"{action} needs the number of who does it (by)")
        info: dict[str, Any] = {}
        if action in ("announce", "locked"):
            if value not in ("true", "false"):
                raise refused("bad_request", f"{action} is set to true or false")
            info[action] = value == "true"
        elif action in ("subject", "description"):
            check_info(value if action == "subject" else None, value)
            info[action] = value
        with self.world.groups_locked() as book:
            record = book.get(group)
            if record is None and action == "join":
                check_info(value or "Group", None)
                record = new_group(group, value or "Group", actor)
            if record is None:
                raise refused("bad_request", "that group does not exist")
            participants = record["participants"]
            if actor not in participants:
                raise refused("bad_request", f"{jid_to_phone(actor)} is not in that group")
            before, member = list(participants), None
            kind = cast(ParticipantAction, "add" if action == "join" else action)
            if info:
                info = change_info(record, actor, info)
            elif action == "leave":
                kind, member = "remove", member_of(target, participants.pop(target))
                note(record, target, "leave", target)
            else:
                require_admin(record, actor, "add, remove, promote or demote participants")
                result, member = change_participant(record, actor, kind, target)
                if result.status != "ok":
                    raise refused("bad_request", f"{jid_to_phone(target)}: {result.status}")
            book.put(record)
        self._tell_info(record, actor, info)
        if member is not None:
            self._tell_participants(record, before, kind, [member], actor)

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
