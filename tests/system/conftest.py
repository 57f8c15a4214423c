"""The system suite, once per engine: the API, the worker runtime, engine host processes and the
engine's adapter, with only WhatsApp simulated.

- `sandbox`: the sandbox engine in a host process, its phones in a `SandboxWorld`;
- `neonize`: the real neonize adapter (`engine.py`, `translate.py`) in a host process over the
  neonize double, its phones and servers a `FakeWhatsApp`.

A test asks for `system` and drives phones through `system.phone`, the same calls on both.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.db import connections

from gateway.core.jids import phone_to_jid
from tests.neonize_double.harness import neonize_engine
from tests.neonize_double.whatsapp import FakeWhatsApp
from tests.workers.engines.test_hosts import sandbox_hosts
from tests.workers.engines.test_sandbox import FAST
from tests.workers.runtime.test_runtime import until
from workers.engines.host.client import HostedEngine
from workers.engines.sandbox import SandboxWorld
from workers.runtime.worker import RuntimeConfig, WorkerRuntime

ENGINES = ["sandbox", "neonize"]
# Receipts: `delivered`, then `read`, this long after a send (both engines).
# QR windows long enough for any step here (neither engine's codes run out in this suite).
TIMINGS = dataclasses.replace(
    FAST,
    qr_first=30.0,
    qr_next=10.0,
    reconnect_delay=2.0,
    connect_delay=1.0,
    delivered_after=0.05,
    read_after=0.1,
)
DOUBLE_SCALE = 0.2  # the double's clock: its first QR code lives 12 s


class SandboxPhone:
    """The sandbox's phones, through the sandbox controls of the host running the session."""

    def __init__(self, system: System, world: SandboxWorld) -> None:
        self.system, self.world = system, world

    def _engine(self, session_id: str) -> HostedEngine:
        for runtime in self.system.runtimes:
            if session_id in runtime.runners:
                return runtime.engines["sandbox"]
        raise AssertionError(f"no worker runs {session_id}")

    async def scan(self, session_id: str, phone_number: str) -> None:
        await self._engine(session_id).control(session_id, "scan", phone_number=phone_number)

    async def receive(
        self,
        session_id: str,
        *,
        sender: str,
        text: str = "",
        kind: str = "text",
        media: bytes | None = None,
        mime_type: str = "",
        group: str = "",
        wa_message_id: str = "",
        from_me: bool = False,
        reply_to: str = "",
        reaction: str = "",
        mentions: tuple[str, ...] = (),
    ) -> None:
        await self._engine(session_id).control(
            session_id,
            "receive",
            reply_to=reply_to,
            reaction=reaction,
            mentions=list(mentions),
            sender_phone=sender,
            type=kind,
            text=text,
            media=base64.b64encode(media).decode() if media is not None else None,
            mime_type=mime_type,
            group=group,
            wa_message_id=wa_message_id,
            from_me=from_me,
        )

    def sent(self, session_id: str) -> list[dict]:
        """What the session sent, as the phones got it: id, to, type, text, and `key` (the
        quoted or reacted-to message: id, from_me, participant in a group)."""
        return [
            {
                "id": m["id"],
                "to": m["to"],
                "type": m["type"],
                "text": m["text"] or m["caption"],
                "reaction": m["reaction"],
                "key": m.get("key"),
                "quoted_text": m.get("quoted_text", ""),
                "mentions": m.get("mentions", []),
                "preview": m.get("preview"),
            }
            for m in self.world.phone_messages(session_id)
        ]

    async def receipts(self, session_id: str, mode: str) -> None:
        await self._engine(session_id).control(session_id, "receipts", mode=mode)

    async def presence(
        self,
        session_id: str,
        sender: str,
        state: str,
        *,
        group: str = "",
        last_seen: int | None = None,
    ) -> bool:
        return await self._engine(session_id).control(
            session_id,
            "presence",
            sender_phone=sender,
            state=state,
            group=group,
            last_seen=last_seen,
        )

    async def block(self, session_id: str, phone_number: str, action: str) -> None:
        """The account's phone blocks or unblocks a contact."""
        await self._engine(session_id).control(
            session_id, "block_from_phone", phone_number=phone_number, change=action
        )

    async def group_event(self, session_id: str, group: str, event: str, **fields: str) -> None:
        """A group's other members act (`participant`, `by`, `value`: see the sandbox control)."""
        await self._engine(session_id).control(
            session_id, "group_event", group=group, event=event, **fields
        )

    async def poll(self, session_id: str, sender: str, question: str, options: list[str]) -> None:
        """A contact sends the session a poll."""
        await self._engine(session_id).control(
            session_id, "receive", sender_phone=sender, type="poll", text=question, options=options
        )

    async def history(self, session_id: str, count: int, chats: int = 10) -> None:
        """WhatsApp sends the session the phone's history."""
        await self._engine(session_id).control(session_id, "history", count=count, chats=chats)

    async def vote(self, session_id: str, voter: str, poll_id: str, options: list[str]) -> None:
        """A contact votes in one of the session's polls (sandbox votes are not encrypted)."""
        await self._engine(session_id).control(
            session_id,
            "receive",
            sender_phone=voter,
            type="poll_vote",
            reply_to=poll_id,
            options=options,
        )

    def reads(self, session_id: str) -> list[tuple[str, list[str]]]:
        """The read receipts the session sent: (chat, message ids) each."""
        return [
            (entry["chat"], entry["message_ids"])
            for entry in self.world.read_log(session_id)
            if entry["event"] == "mark_read"
        ]

    def shown(self, session_id: str) -> list[tuple[str, str]]:
        """What the session showed: ("presence", available|unavailable), (chat, state) or
        ("subscribe", contact)."""
        shown = []
        for entry in self.world.read_log(session_id):
            if entry["event"] == "presence":
                shown.append(("presence", entry["state"]))
            elif entry["event"] == "subscribe_presence":
                shown.append(("subscribe", entry["chat"]))
            elif entry["event"] in ("typing", "recording", "paused"):
                shown.append((entry["chat"], entry["event"]))
        return shown

    async def drop(self, session_id: str) -> None:
        await self._engine(session_id).control(session_id, "drop_connection")

    async def unlink(self, session_id: str) -> None:
        await self._engine(session_id).control(session_id, "remote_logout")


class DoublePhone:
    """FakeWhatsApp's phones and servers, behind the neonize double."""

    def __init__(self, world: FakeWhatsApp) -> None:
        self.world = world

    async def scan(self, session_id: str, phone_number: str) -> None:
        self.world.scan(session_id, phone_number)

    async def receive(
        self,
        session_id: str,
        *,
        sender: str,
        text: str = "",
        kind: str = "text",
        media: bytes | None = None,
        mime_type: str = "",
        group: str = "",
        wa_message_id: str = "",
        from_me: bool = False,
        reply_to: str = "",
        reaction: str = "",
        mentions: tuple[str, ...] = (),
    ) -> None:
        from neonize.proto import Neonize_pb2 as N
        from neonize.proto.waCommon import WACommon_pb2 as common
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

        chat_jid = group or f"{sender.lstrip('+')}@s.whatsapp.net"
        key = common.MessageKey(remoteJID=chat_jid, fromMe=False, ID=reply_to)
        if kind == "reaction":  # what whatsmeow delivers (events.Message with a reaction)
            content = wa.Message(reactionMessage=wa.ReactionMessage(key=key, text=reaction))
        elif kind == "edit":  # whatsmeow unwraps editedMessage (UnwrapRaw): the protocol message
            edited = wa.ProtocolMessage(
                key=key,
                type=wa.ProtocolMessage.MESSAGE_EDIT,
                editedMessage=wa.Message(conversation=text),
            )
            content = wa.Message(protocolMessage=edited)
        elif kind == "revoke":
            content = wa.Message(
                protocolMessage=wa.ProtocolMessage(key=key, type=wa.ProtocolMessage.REVOKE)
            )
        elif mentions:  # WhatsApp names them in the context info of an extended text
            context = wa.ContextInfo(
                mentionedJID=[f"{m.lstrip('+')}@s.whatsapp.net" for m in mentions]
            )
            content = wa.Message(
                extendedTextMessage=wa.ExtendedTextMessage(text=text, contextInfo=context)
            )
        elif media is None:
            content = wa.Message(conversation=text)
        else:
            path = f"/v/{wa_message_id or time.monotonic_ns()}"
            self.world.media[path] = media
            fields = {"directPath": path, "mimetype": mime_type, "fileLength": len(media)}
            content = {
                "image": lambda: wa.Message(imageMessage=wa.ImageMessage(caption=text, **fields)),
                "document": lambda: wa.Message(
                    documentMessage=wa.DocumentMessage(caption=text, **fields)
                ),
                "sticker": lambda: wa.Message(stickerMessage=wa.StickerMessage(**fields)),
            }[kind]()
        sender_jid = N.JID(User=sender.lstrip("+"), Server="s.whatsapp.net")
        chat = N.JID(User=group.partition("@")[0], Server="g.us") if group else sender_jid
        if from_me:  # the phone itself sent it to `sender`: we are the sender
            own = self.world.devices[session_id].jid.partition("@")[0]
            sender_jid = N.JID(User=own, Server="s.whatsapp.net")
        source = N.MessageSource(
            Chat=chat, Sender=sender_jid, IsFromMe=from_me, IsGroup=bool(group)
        )
        info = N.MessageInfo(
            MessageSource=source,
            ID=wa_message_id or f"3EB0{time.monotonic_ns():X}",
            Pushname="Contact",
            Timestamp=int(time.time()),
        )
        self.world.deliver(session_id, N.Message(Info=info, Message=content))

    def sent(self, session_id: str) -> list[dict]:
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

        device = self.world.devices.get(session_id)
        own = device.jid if device else ""
        return [
            decoded(m, wa.Message.FromString(base64.b64decode(m["message"])), own)
            for m in self.world.sent.get(session_id, [])
        ]

    async def receipts(self, session_id: str, mode: str) -> None:
        self.world.receipt_mode = mode

    async def presence(
        self,
        session_id: str,
        sender: str,
        state: str,
        *,
        group: str = "",
        last_seen: int | None = None,
    ) -> bool:
        return self.world.presence(session_id, sender, state, group=group, last_seen=last_seen)

    async def poll(self, session_id: str, sender: str, question: str, options: list[str]) -> None:
        self.world.poll_from(session_id, sender, question, options)

    async def history(self, session_id: str, count: int, chats: int = 10) -> None:
        self.world.push_history(session_id, count, chats=chats)

    async def vote(self, session_id: str, voter: str, poll_id: str, options: list[str]) -> None:
        """A contact's WhatsApp encrypts the vote with the poll's secret (whatsmeow
        EncryptPollVote) and sends it."""
        self.world.poll_vote(session_id, voter, poll_id, options)

    def reads(self, session_id: str) -> list[tuple[str, list[str]]]:
        return [(read["chat"], list(read["ids"])) for read in self.world.reads]

    def shown(self, session_id: str) -> list[tuple[str, str]]:
        return [(what, state) for uuid, what, state in self.world.presences if uuid == session_id]

    async def block(self, session_id: str, phone_number: str, action: str) -> None:
        self.world.block_from_phone(session_id, phone_number, action)

    async def group_event(self, session_id: str, group: str, event: str, **fields: str) -> None:
        self.world.group_event(session_id, group, event, **fields)

    async def drop(self, session_id: str) -> None:
        self.world.drop(session_id)

    async def unlink(self, session_id: str) -> None:
        self.world.unlink(session_id)


def decoded(sent: dict, message: Any, own: str) -> dict:
    """A WhatsApp message in the sandbox phones' terms."""
    entry = {"id": sent["id"], "to": sent["to"], "text": "", "reaction": "", "key": None}
    entry["quoted_text"], entry["mentions"], entry["preview"] = "", [], None
    group = sent["to"].endswith("@g.us")
    context = None
    if message.conversation:
        entry |= {"type": "text", "text": message.conversation}
    elif message.HasField("extendedTextMessage"):
        extended = message.extendedTextMessage
        entry |= {"type": "text", "text": extended.text}
        context = extended.contextInfo
        if extended.matchedText:
            entry["preview"] = {
                "url": extended.matchedText,
                "title": extended.title,
                "description": extended.description,
                "thumbnail": bool(extended.JPEGThumbnail),
            }
    elif message.HasField("editedMessage") or message.HasField("protocolMessage"):
        inner = message.editedMessage.message if message.HasField("editedMessage") else message
        protocol = inner.protocolMessage
        edit = protocol.type == protocol.MESSAGE_EDIT
        edited = protocol.editedMessage
        new_text = edited.conversation or next(
            (
                getattr(edited, f).caption
                for f in ("imageMessage", "videoMessage", "documentMessage")
                if edited.HasField(f)
            ),
            "",
        )
        entry |= {"type": "edit" if edit else "revoke", "text": new_text}
        entry["key"] = {
            "id": protocol.key.ID,
            "from_me": protocol.key.fromMe,
            "participant": protocol.key.participant,
        }
    elif message.HasField("reactionMessage"):
        key = message.reactionMessage.key
        entry |= {"type": "reaction", "reaction": message.reactionMessage.text}
        entry["key"] = {"id": key.ID, "from_me": key.fromMe, "participant": key.participant}
    elif message.HasField("locationMessage"):
        entry["type"], context = "location", message.locationMessage.contextInfo
    elif message.HasField("contactMessage"):
        entry["type"], context = "contact", message.contactMessage.contextInfo
    else:
        for field, kind in [
            ("imageMessage", "image"),
            ("videoMessage", "video"),
            ("audioMessage", "audio"),
            ("documentMessage", "document"),
            ("stickerMessage", "sticker"),
        ]:
            if message.HasField(field):
                media = getattr(message, field)
                entry["type"] = "voice" if kind == "audio" and media.PTT else kind
                entry["text"] = getattr(media, "caption", "")
                context = media.contextInfo
    if context is not None:
        entry["mentions"] = list(context.mentionedJID)
    if context is not None and context.stanzaID:
        from_me = context.participant == own
        entry["key"] = {
            "id": context.stanzaID,
            "from_me": from_me,
            "participant": context.participant if group and not from_me else "",
        }
        entry["quoted_text"] = context.quotedMessage.conversation
    return entry


@dataclass
class System:
    engine: str
    start_worker: Any  # async (name="w1") -> WorkerRuntime
    runtimes: list = dataclasses.field(default_factory=list)
    phone: Any = None
    whatsapp: FakeWhatsApp | None = None  # the double's servers (neonize only)
    killed: list = dataclasses.field(default_factory=list)  # host pids a test killed itself

    def jid(self, phone_number: str) -> str:
        return phone_to_jid(phone_number)


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(params=ENGINES)
def engine_name(request) -> str:
    return request.param


@pytest_asyncio.fixture
async def system(engine_name: str, tmp_path: Path, settings):
    settings.BACKEND_URL = "http://127.0.0.1:9"  # outbox rows are written; nobody delivers them
    settings.SEND_INTERVAL_MIN_SECONDS = settings.SEND_INTERVAL_MAX_SECONDS = 0
    settings.SEND_MAX_PER_MINUTE = 0
    settings.SEND_TYPING = False
    double = None
    if engine_name == "neonize":
        double = FakeWhatsApp(tmp_path / "whatsapp").start()
        double.receipts_after = (TIMINGS.delivered_after, TIMINGS.read_after)
    world = SandboxWorld(tmp_path / "world")

    def make_engine() -> HostedEngine:
        if double is not None:
            engine = neonize_engine(double, DOUBLE_SCALE, sessions_per_host=20)
        else:
            engine = sandbox_hosts(world.root, TIMINGS, restart_delay=0.2)
        return engine

    running: list[tuple[WorkerRuntime, asyncio.Task]] = []

    async def start(name: str = "w1") -> WorkerRuntime:
        runtime = WorkerRuntime(
            RuntimeConfig(
                name=name,
                engines=[engine_name],
                lease_seconds=6,
                poll_seconds=0.2,
                auth_root=tmp_path / name / "auth",
            ),
            engines={engine_name: make_engine()},
        )
        task = asyncio.create_task(runtime.run())
        running.append((runtime, task))
        system.runtimes.append(runtime)
        await until(lambda: runtime.worker_id, what="the worker to register")
        return runtime

    system = System(engine_name, start, whatsapp=double)
    system.phone = DoublePhone(double) if double is not None else SandboxPhone(system, world)
    yield system
    for runtime, task in running:
        runtime.stop.set()
        # A bound for the cleanup, not a speed check: a stop may wait for an engine's thread
        # (NEONIZE_STOP_WAIT) and a host's exit (10 s) on a loaded machine.
        await asyncio.wait_for(task, 60)
    # No scenario may take an engine host down (the double aborts as neonize's Go side would).
    deaths = [pid for runtime, _ in running for pid in runtime.engines[engine_name].deaths]
    assert deaths == system.killed, f"engine hosts died: {deaths}"
    if double is not None:
        double.close()
