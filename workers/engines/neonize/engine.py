"""The neonize engine, run inside an engine host process (never in a worker or web process).

What shapes it (measured on neonize 0.5.2):
- its Go core keeps shared maps without locks: concurrent calls for different sessions can abort
  the process. Every call into neonize therefore goes through one thread (`_calls`), and sessions
  start and stop one at a time (`_lifecycle`).
- `connect()` blocks for the whole life of a connection, so each session's connection runs on a
  thread of its own; only that long call is outside `_calls`.
- event handlers run on Go's threads: they only hand the event to the event loop, which translates
  it on the `_calls` thread (translation may ask the store, e.g. to resolve a @lid).
- handlers must be registered before `connect()`; `get_me()` before connecting aborts.
- an initial connect that fails (no network, DNS) raises at once or after up to 60 s; it is retried
  here with exponential backoff, reported as `Disconnected(will_reconnect=True,
  code="connect_failed")`. Once connected, whatsmeow retries dropped connections itself.
- a QR code lives 60 s, the next ones 20 s; when no new code comes in time (the window closed
  unscanned, or the socket dropped while linking) the session ends with
  `Disconnected(will_reconnect=False, code="qr_timeout")`.
- `send_message` returns the WhatsApp id only after sending: the engine cannot take our id.
- a connection stopped while linking never returns from `connect()` (whatsmeow stops the codes
  without closing their channel; after the last code, FetchMe waits forever for a device id): a
  stop waits for the connection's thread only briefly and never while holding the lifecycle lock;
  a thread that does not end is counted (`stuck_threads`) and the worker retires the host once its
  sessions are gone (workers.engines.host.client).
- `get_me`, `get_pn_from_lid`, … on a client that `stop()` removed dereference nil in Go and abort
  the whole host: every call that touches a client checks, on the one neonize thread, that the
  session is still open (`_live`).
- whatsmeow's own events end what would otherwise hang in silence: a ban (402), an outdated
  client (405) and logged-out failures stop the session with their reason; unanswered keepalives
  make it `reconnecting` until one is answered again.
- PairPhone and Logout need the websocket: a session still starting is waited for.
- media are downloaded by neonize into a file the worker names: no bytes cross the host's pipe.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core.jids import is_lid, jid_to_phone, jid_user
from workers.engines.base import (
    BlockAction,
    Blocked,
    ChatState,
    Connected,
    ContactInfo,
    Disconnected,
    Engine,
    EngineError,
    Group,
    GroupCreated,
    InboundMedia,
    LoggedOut,
    NumberCheck,
    OutboundMessage,
    PairCode,
    ParticipantAction,
    ParticipantResult,
    PresenceState,
    Profile,
    QrCode,
    SendResult,
    StreamReplaced,
    spawn_into,
    started_session,
)
from workers.engines.neonize import translate
from workers.engines.store import delete_store, store_path

logger = logging.getLogger(__name__)

# WhatsApp's QR schedule (whatsmeow qrchan.go); tests run the neonize double on a faster clock.
QR_FIRST = float(os.environ.get("NEONIZE_QR_FIRST", "60"))
QR_NEXT = float(os.environ.get("NEONIZE_QR_NEXT", "20"))
PAIR_CODE_VALID = 180.0
# How long a pairing code asked for while the session starts waits for its websocket.
PAIR_WAIT = 30.0
# How long a logout waits for a session still connecting (unlinking needs the connection).
LOGOUT_WAIT = 15.0
LOCAL_ONLY = (
    "logged out here only: WhatsApp could not be reached to unlink the device, so the phone "
    "still lists it under Linked devices"
)
# How long a stop waits for the connection's thread to end before counting it stuck.
STOP_WAIT = float(os.environ.get("NEONIZE_STOP_WAIT", "5"))


def _picture_url(client: Any, jid: Any) -> str | None:
    """The picture's URL, or None: whatsmeow GetProfilePictureInfo answers an error for no
    picture (404) or one hidden by privacy settings (401)."""
    try:
        picture = client.get_profile_picture(jid)
    except Exception:  # noqa: BLE001 - no picture is a normal answer
        return None
    return picture.URL or None


def _failed(info: Any) -> set[str]:
    """The JIDs of a new group's participants WhatsApp did not add (an Error beside them)."""
    return {translate.jid_str(p.JID) for p in info.Participants if p.Error and p.Error != 200}


def own_jids(me: Any) -> list[str]:
    """Every JID we go by: the phone-number one and the @lid one (LID-addressed groups)."""
    if me is None:
        return []
    return [own_jid(me)] + ([translate.jid_str(me.LID)] if me.HasField("LID") else [])


def _jid(value: str) -> Any:
    """neonize's JID for a `user@server` string."""
    from neonize.utils.jid import build_jid

    user, _, server = value.partition("@")
    return build_jid(user, server or "s.whatsapp.net")


def own_jid(me: Any) -> str:
    """Our own user JID (no device part) from the Device neonize reported at Connected."""
    if me is None or not me.HasField("JID"):
        return ""
    return jid_user(translate.jid_str(me.JID)) + "@s.whatsapp.net"


@dataclass
class _Session:
    id: str
    auth_dir: Path
    client: Any = None
    thread: threading.Thread | None = None
    # starting | linking | connected | stalled (keepalive unanswered) | reconnecting (whatsmeow
    # retries) | retrying (we retry the first connect) | closed
    state: str = "starting"
    qr_count: int = 0
    qr_deadline: asyncio.TimerHandle | None = None
    me: Any = None  # the Device neonize reported at Connected
    attempts: int = 0
    tasks: set[asyncio.Task] = field(default_factory=set)
    # Set once the websocket is up: the first QR code came (linking) or the session connected.
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class NeonizeEngine(Engine):
    name = "neonize"
    accepts_message_ids = False

    def __init__(
        self, *, retry_first: float = 2.0, retry_max: float = 60.0, settle: float = 0.5
    ) -> None:
        super().__init__()
        # neonize tags every 1:1 message as sent by a bot unless told not to.
        os.environ.setdefault("NEONIZE_BOT_TAG", "off")
        import neonize  # noqa: F401 - loads the Go library in this (host) process only

        logging.getLogger("neonize").setLevel(logging.WARNING)
        logging.getLogger("whatsmeow").setLevel(logging.WARNING)
        self.retry_first, self.retry_max, self.settle = retry_first, retry_max, settle
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neonize-call")
        self._lifecycle = asyncio.Lock()
        self._sessions: dict[str, _Session] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stuck_threads = 0  # connections that never returned after a stop
        self._watching: set[asyncio.Task] = set()
        self.on_stuck: Callable[[int], None] | None = None  # the host tells its worker

    # --- plumbing -----------------------------------------------------------------------------

    async def _call(self, function, *args: Any) -> Any:
        """Run `function` on the one thread allowed to call into neonize."""
        return await asyncio.get_running_loop().run_in_executor(self._calls, function, *args)

    async def _live(self, session: _Session, function, *args: Any) -> Any:
        """`function(*args)` on the neonize thread, only while the session is still open there:
        a stop closes the session on the event loop before it queues `client.stop()` on this same
        thread, so a call that finds the session open runs before the client is gone."""

        def call() -> Any:
            if session.state == "closed" or session.client is None:
                raise EngineError("the session was stopped", code="not_started")
            return function(*args)

        return await self._call(call)

    def _session(self, session_id: str, *, connected: bool = False) -> _Session:
        return started_session(self._sessions, session_id, connected=connected)

    def _from_go(self, coroutine_function, *args: Any) -> None:
        """Called on Go's threads: hand the work to the event loop and return at once."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: loop.create_task(coroutine_function(*args)))

    # --- the client and its handlers -------------------------------------------------------------

    def _make_client(self, session: _Session) -> Any:
        from neonize.client import NewClient
        from neonize.events import (
            BlocklistEv,
            ChatPresenceEv,
            ClientOutdatedEv,
            ConnectedEv,
            ConnectFailureEv,
            DisconnectedEv,
            GroupInfoEv,
            HistorySyncEv,
            JoinedGroupEv,
            KeepAliveRestoredEv,
            KeepAliveTimeoutEv,
            LoggedOutEv,
            MessageEv,
            PictureEv,
            PresenceEv,
            ReceiptEv,
            StreamReplacedEv,
            TemporaryBanEv,
        )

        session.auth_dir.mkdir(parents=True, exist_ok=True)
        client = NewClient(name=str(store_path(session.auth_dir)), uuid=session.id)
        sid = session.id
        client.event.qr(lambda _c, data: self._from_go(self._on_qr, sid, data))
        handlers = {
            ConnectedEv: self._on_connected,
            DisconnectedEv: self._on_disconnected,
            LoggedOutEv: self._on_logged_out,
            StreamReplacedEv: self._on_stream_replaced,
            ConnectFailureEv: self._on_connect_failure,
            TemporaryBanEv: self._on_temporary_ban,
            ClientOutdatedEv: self._on_client_outdated,
            KeepAliveTimeoutEv: self._on_keepalive_timeout,
            KeepAliveRestoredEv: self._on_keepalive_restored,
            MessageEv: self._on_message,
            ReceiptEv: self._on_receipt,
            PresenceEv: self._on_presence,
            ChatPresenceEv: self._on_chat_presence,
            BlocklistEv: self._on_blocklist,
            JoinedGroupEv: self._on_joined_group,
            GroupInfoEv: self._on_group_info,
            PictureEv: self._on_picture,
            HistorySyncEv: self._on_history,
        }
        for event_type, handler in handlers.items():
            client.event(event_type)(
                lambda _c, event, handler=handler: self._from_go(handler, sid, event)
            )
        return client

    def _run_connection(self, session: _Session) -> None:
        """The session's own thread: `connect()` returns only when the connection ends."""
        error: BaseException | None = None
        try:
            session.client.connect()
        except BaseException as exc:  # noqa: BLE001 - reported to the event loop
            error = exc
        self._from_go(self._on_connection_ended, session.id, session, error)

    async def _launch(self, session: _Session) -> None:
        session.state = "starting"
        session.attempts += 1
        if session.client is None:
            session.client = await self._call(self._make_client, session)
        await self._call(self._start_connection, session)

    def _start_connection(self, session: _Session) -> None:
        """On the neonize thread: start the connection's own thread and hold this one while its
        connect() registers the client in Go's map (an unlocked write: any other call into
        neonize meanwhile, from any session, could abort the process)."""
        session.thread = threading.Thread(
            target=self._run_connection, args=(session,), name=f"neonize-{session.id}", daemon=True
        )
        session.thread.start()
        time.sleep(self.settle)

    # --- events (on the event loop) ---------------------------------------------------------------

    async def _on_qr(self, session_id: str, data: bytes) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.state == "closed":
            return
        session.state = "linking"
        session.ready.set()
        valid = QR_FIRST if session.qr_count == 0 else QR_NEXT
        session.qr_count += 1
        self.emit(QrCode(session_id, code=data.decode(), expires_in=valid))
        if session.qr_deadline is not None:
            session.qr_deadline.cancel()
        # No count of codes is assumed: whenever the next one does not come in time (the window
        # closed, the socket dropped while linking, the servers sent fewer), linking is over.
        session.qr_deadline = asyncio.get_running_loop().call_later(
            valid + max(1.0, valid / 10),
            lambda: spawn_into(session.tasks, self._qr_timeout(session)),
        )

    async def _qr_timeout(self, session: _Session) -> None:
        if session.state != "linking":
            return
        await self._stop_session(session)
        self.emit(
            Disconnected(
                session.id,
                reason="the QR code was not scanned in time",
                will_reconnect=False,
                code="qr_timeout",
            )
        )

    async def _on_connected(self, session_id: str, event: Any) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.state == "closed":
            return
        if session.qr_deadline is not None:
            session.qr_deadline.cancel()
        try:
            me = await self._live(session, session.client.get_me)
        except EngineError:
            return  # stopped meanwhile
        session.me = me
        session.state, session.attempts = "connected", 0
        session.ready.set()
        self._emit_connected(session)

    def _emit_connected(self, session: _Session) -> None:
        me = session.me
        jid = translate.jid_str(me.JID) if me.HasField("JID") else ""
        self.emit(
            Connected(session.id, jid=jid, phone_number=jid_to_phone(jid), push_name=me.PushName)
        )

    async def _on_keepalive_timeout(self, session_id: str, event: Any) -> None:
        """whatsmeow keepalive.go: a ping went unanswered. The socket looks open, nothing comes
        through: `reconnecting` until a ping is answered again (KeepAliveRestored) or whatsmeow
        reconnects by itself after 3 minutes (Connected)."""
        session = self._sessions.get(session_id)
        if session is None or session.state != "connected":
            return
        session.state = "stalled"
        self.emit(
            Disconnected(
                session_id,
                reason=f"WhatsApp stopped answering keepalive pings ({event.ErrorCount} missed)",
                will_reconnect=True,
                code="keepalive_timeout",
            )
        )

    async def _on_keepalive_restored(self, session_id: str, event: Any) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.state != "stalled" or session.me is None:
            return
        session.state = "connected"
        self._emit_connected(session)

    async def _on_disconnected(self, session_id: str, event: Any) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.state in ("connected", "stalled"):
            session.state = "reconnecting"  # whatsmeow reconnects; Connected follows
            self.emit(Disconnected(session_id, reason="connection lost", will_reconnect=True))

    async def _on_logged_out(self, session_id: str, event: Any) -> None:
        await self._end_logged_out(session_id, translate.translate_logged_out(session_id, event))

    async def _end_logged_out(self, session_id: str, event: LoggedOut) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        await self._stop_session(session)
        delete_store(session.auth_dir)  # the keys are worthless now
        self.emit(event)

    async def _on_stream_replaced(self, session_id: str, event: Any) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        # Never reconnect by ourselves: the runtime re-checks its lease first.
        await self._stop_session(session)
        self.emit(StreamReplaced(session_id))

    async def _on_connect_failure(self, session_id: str, event: Any) -> None:
        result = translate.translate_connect_failure(session_id, event)
        if isinstance(result, LoggedOut):
            await self._end_logged_out(session_id, result)
        elif not result.will_reconnect:
            session = self._sessions.get(session_id)
            if session is not None:
                await self._stop_session(session)
            self.emit(result)

    async def _on_temporary_ban(self, session_id: str, event: Any) -> None:
        await self._end_failed(session_id, translate.translate_temporary_ban(session_id, event))

    async def _on_client_outdated(self, session_id: str, event: Any) -> None:
        await self._end_failed(session_id, translate.translate_client_outdated(session_id))

    async def _end_failed(self, session_id: str, event: Disconnected) -> None:
        """A failure whatsmeow does not reconnect after: the session ends here, with its reason
        (connect() would otherwise go on blocking in silence)."""
        session = self._sessions.get(session_id)
        if session is None:
            return
        await self._stop_session(session)
        self.emit(event)

    async def _on_message(self, session_id: str, event: Any) -> None:
        if event.Message.HasField("pollUpdateMessage"):
            await self._translated(session_id, self._poll_vote, event)
            return
        await self._translated(session_id, translate.translate_message, event)

    def _poll_vote(self, session_id: str, event: Any, resolve: Callable[[str], str]) -> Any:
        """On the neonize thread: a vote, decrypted with the poll's secret from the store
        (whatsmeow DecryptPollVote); one that cannot be is told as such, never dropped."""
        session = self._sessions[session_id]
        try:
            vote = session.client.decrypt_poll_vote(event)
        except Exception as exc:  # noqa: BLE001 - recorded with the vote
            return translate.translate_poll_vote(session_id, event, None, resolve, error=str(exc))
        return translate.translate_poll_vote(session_id, event, vote, resolve)

    async def _translated(self, session_id: str, translator: Callable, event: Any) -> None:
        """An event whose translation may look a @lid's number up in the store (on the neonize
        thread, like every call into neonize)."""
        session = self._sessions.get(session_id)
        if session is None or session.client is None:
            return
        resolve = self._lid_resolver(session.client)
        try:
            translated = await self._live(session, translator, session_id, event, resolve)
        except EngineError:
            return  # stopped meanwhile: a message comes again on the next connection
        for each in translated if isinstance(translated, list) else [translated]:
            if each is not None:
                self.emit(each)

    @staticmethod
    def _lid_resolver(client: Any) -> Callable[[str], str]:
        """A @lid's phone-number JID from the session's store (call on the neonize thread)."""

        def resolve(lid: str) -> str:
            # A whole JID (build_jid): neonize serialises it, and a bare JID(User, Server)
            # lacks required fields (EncodeError).
            return translate.jid_str(client.get_pn_from_lid(_jid(lid)))

        return resolve

    async def _on_receipt(self, session_id: str, event: Any) -> None:
        receipt = translate.translate_receipt(session_id, event)
        if receipt is not None:
            self.emit(receipt)

    async def _on_presence(self, session_id: str, event: Any) -> None:
        await self._translated(session_id, translate.translate_presence, event)

    async def _on_chat_presence(self, session_id: str, event: Any) -> None:
        await self._translated(session_id, translate.translate_chat_presence, event)

    async def _on_blocklist(self, session_id: str, event: Any) -> None:
        await self._translated(session_id, translate.translate_blocklist, event)

    async def _on_joined_group(self, session_id: str, event: Any) -> None:
        session = self._sessions.get(session_id)
        own = frozenset(own_jids(session.me)) if session is not None else frozenset()
        await self._translated(
            session_id,
            lambda sid, ev, resolve: translate.translate_joined_group(sid, ev, resolve, own),
            event,
        )

    async def _on_group_info(self, session_id: str, event: Any) -> None:
        await self._translated(session_id, translate.translate_group_info, event)

    async def _on_history(self, session_id: str, event: Any) -> None:
        """History may come before Connected (right after pairing): our JID from the store."""

        def history(sid: str, ev: Any, resolve: Callable[[str], str]) -> Any:
            own = own_jid(self._sessions[sid].client.get_me())
            return translate.translate_history(sid, ev, resolve, own)

        await self._translated(session_id, history, event)

    async def _on_picture(self, session_id: str, event: Any) -> None:
        await self._translated(session_id, translate.translate_picture, event)

    async def _on_connection_ended(
        self, session_id: str, session: _Session, error: BaseException | None
    ) -> None:
        if self._sessions.get(session_id) is not session or session.state == "closed":
            return  # stopped on purpose
        delay = min(self.retry_max, self.retry_first * 2 ** max(0, session.attempts - 1))
        reason = f"{type(error).__name__}: {error}" if error else "the connection ended"
        logger.warning(
            "neonize connection ended (%s); retrying in %.0fs",
            reason,
            delay,
            extra={"session_id": session_id},
        )
        session.state = "retrying"
        self.emit(
            Disconnected(
                session_id, reason=reason[:500], will_reconnect=True, code="connect_failed"
            )
        )
        spawn_into(session.tasks, self._retry(session, delay))

    async def _retry(self, session: _Session, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lifecycle:
            if self._sessions.get(session.id) is session and session.state == "retrying":
                await self._launch(session)

    # --- commands -----------------------------------------------------------------------------

    async def start(self, session_id: str, auth_dir: Path) -> None:
        self._loop = asyncio.get_running_loop()
        async with self._lifecycle:
            if session_id in self._sessions:
                raise EngineError(
                    f"session {session_id} is already started",
                    permanent=True,
                    code="already_started",
                )
            session = _Session(session_id, Path(auth_dir))
            self._sessions[session_id] = session
            try:
                await self._launch(session)
            except Exception as exc:
                self._sessions.pop(session_id, None)
                raise EngineError(f"could not start: {exc}", code="start_failed") from exc

    async def _stop_session(self, session: _Session) -> None:
        """Disconnect (keeping the store); the connection's thread is left to end by itself
        (`_await_thread`)."""
        session.state = "closed"
        self._sessions.pop(session.id, None)
        if session.qr_deadline is not None:
            session.qr_deadline.cancel()
        current = asyncio.current_task()
        for task in list(session.tasks):
            if task is not current:
                task.cancel()
        if session.client is not None:
            await self._call(session.client.stop)
        if current is None or current not in session.tasks:
            return
        # Stopped from inside (QR timeout, logged out, replaced, banned): nobody waits for the
        # thread, but it is still watched.
        spawn_into(self._watching, self._await_thread(session))

    async def _await_thread(self, session: _Session) -> None:
        """Wait briefly for a stopped connection's thread; one that does not end is stuck in the
        Go side for good (it ends with the host process)."""
        thread = session.thread
        if thread is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, thread.join, STOP_WAIT)
        if thread.is_alive():
            self.stuck_threads += 1
            logger.warning(
                "a stopped neonize connection did not end (%s stuck in this host)",
                self.stuck_threads,
                extra={"session_id": session.id},
            )
            if self.on_stuck is not None:
                self.on_stuck(self.stuck_threads)

    async def stop(self, session_id: str) -> None:
        # The lock first: a stop that arrives while this session's start waits behind another
        # one must see (and stop) what that start brings up. Its thread is waited for after the
        # lock is released, so no other session's start or stop waits behind it.
        async with self._lifecycle:
            session = self._sessions.get(session_id)
            if session is not None:
                await self._stop_session(session)
        if session is not None:
            await self._await_thread(session)

    async def logout(self, session_id: str) -> None:
        """Unlink on WhatsApp, which needs the connection (whatsmeow Logout sends an IQ): a
        session still connecting is waited for. Where WhatsApp cannot be reached the device is
        unlinked here only, and the reason says so (the phone still lists it)."""
        session = self._session(session_id)
        if session.state in ("starting", "retrying"):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.ready.wait(), LOGOUT_WAIT)
        reason = "logged out"
        if session.state == "connected":
            try:
                await self._live(session, session.client.logout)
            except Exception as exc:  # noqa: BLE001 - unlinking locally matters more
                logger.warning(
                    "logout on WhatsApp failed: %s", exc, extra={"session_id": session_id}
                )
                reason = f"{LOCAL_ONLY} ({type(exc).__name__}: {exc})"[:500]
        elif session.state != "linking":  # linking: no device yet, nothing to unlink
            reason = LOCAL_ONLY
        async with self._lifecycle:
            await self._stop_session(session)
        delete_store(session.auth_dir)
        self.emit(LoggedOut(session_id, reason=reason))

    async def send(self, session_id: str, message: OutboundMessage) -> SendResult:
        session = self._session(session_id, connected=True)
        return await self._sent(session, self._send, session, message)

    async def _sent(self, session: _Session, function: Callable, *args: Any) -> SendResult:
        """`function(*args)` sends a message on the neonize thread: its SendResponse, or its
        error under the send error codes."""
        try:
            response = await self._live(session, function, *args)
        except EngineError:
            raise
        except Exception as exc:
            code, permanent = translate.send_error(exc)
            raise EngineError(
                f"{type(exc).__name__}: {exc}", code=code, permanent=permanent
            ) from exc
        secret = response.Message.messageContextInfo.messageSecret
        return SendResult(
            wa_message_id=response.ID,
            timestamp=float(response.Timestamp or time.time()),
            secret=base64.b64encode(secret).decode() if secret else "",
        )

    async def edit_message(
        self, session_id: str, chat: str, wa_message_id: str, text: str, kind: str = "text"
    ) -> SendResult:
        """neonize edit_message: build_edit's ProtocolMessage MESSAGE_EDIT (in an
        editedMessage wrapper) with the new content, sent to the chat: the text, or a media
        message of the same kind carrying the new caption."""
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

        session = self._session(session_id, connected=True)
        content = {
            "image": lambda: wa.Message(imageMessage=wa.ImageMessage(caption=text)),
            "video": lambda: wa.Message(videoMessage=wa.VideoMessage(caption=text)),
            "document": lambda: wa.Message(documentMessage=wa.DocumentMessage(caption=text)),
        }.get(kind, lambda: wa.Message(conversation=text))()
        edit = session.client.edit_message
        return await self._sent(session, edit, _jid(chat), wa_message_id, content)

    async def revoke_message(
        self, session_id: str, chat: str, wa_message_id: str, sender: str = ""
    ) -> SendResult:
        """neonize revoke_message: a ProtocolMessage REVOKE keyed by chat, id and (for someone
        else's message, as a group admin) its sender's JID."""
        session = self._session(session_id, connected=True)
        own = own_jid(session.me)
        revoke = session.client.revoke_message
        return await self._sent(session, revoke, _jid(chat), _jid(sender or own), wa_message_id)

    def _send(self, session: _Session, message: OutboundMessage) -> Any:
        """On the neonize thread: build the WhatsApp message for `message` and send it."""
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
        from neonize.utils.jid import build_jid

        client = session.client
        user, _, server = message.to.partition("@")
        to = build_jid(user, server or "s.whatsapp.net")
        # WhatsApp keys the quoted (or reacted-to) message by chat, sender and id: the sender is
        # a group's member in groups, the other person in a one-to-one chat, and our own JID
        # for a message of ours (whatsmeow BuildMessageKey sets FromMe from that JID).
        quoted_sender = (
            own_jid(session.me)
            if message.reply_to_from_me
            else message.reply_to_sender or message.to
        )
        context = (
            wa.ContextInfo(
                stanzaID=message.reply_to,
                participant=quoted_sender,
                quotedMessage=wa.Message(conversation=message.reply_to_text),
            )
            if message.reply_to and message.type != "reaction"
            else None
        )
        if message.mentions and message.type != "reaction":
            # Mentions travel in the ContextInfo's mentionedJID beside the "@<number>" in the
            # text (WhatsApp Web and whatsmeow's ContextInfo, waE2E.proto).
            context = context or wa.ContextInfo()
            context.mentionedJID.extend(message.mentions)
        kind = message.type
        if kind == "text":
            content = (
                wa.Message(
                    extendedTextMessage=wa.ExtendedTextMessage(
                        text=message.text, contextInfo=context
                    )
                )
                if context or message.preview
                else message.text
            )
            if message.preview is not None and not isinstance(content, str):
                # What WhatsApp shows under the link (ExtendedTextMessage: matchedText, title,
                # description, JPEGThumbnail), made by the gateway through its SSRF guard.
                preview, extended = message.preview, content.extendedTextMessage
                extended.matchedText, extended.title = preview.url, preview.title
                extended.description = preview.description
                if preview.thumbnail:
                    extended.JPEGThumbnail = base64.b64decode(preview.thumbnail)
        elif kind == "reaction":
            sender_user, _, sender_server = quoted_sender.partition("@")
            content = client.build_reaction(
                to, build_jid(sender_user, sender_server), message.reply_to, message.reaction
            )
        elif kind == "poll":
            from neonize.utils.enum import VoteType

            poll = message.poll
            assert poll is not None  # a poll message has one (the API requires it)
            # whatsmeow BuildPollCreation: the options, how many a voter may choose (0: any),
            # and the message secret its votes are encrypted with, which send keeps in the store.
            content = client.build_poll_vote_creation(
                poll.question,
                list(poll.options),
                VoteType.MULTIPLE if poll.multiple else VoteType.SINGLE,
            )
        elif kind == "location":
            location = message.location
            assert location is not None  # a location message has one (the API requires it)
            content = wa.Message(
                locationMessage=wa.LocationMessage(
                    degreesLatitude=location.latitude,
                    degreesLongitude=location.longitude,
                    name=location.name,
                    address=location.address,
                    contextInfo=context,
                )
            )
        elif kind == "contact":
            contact = message.contact
            assert contact is not None  # a contact message has one (the API requires it)
            digits = jid_user(contact.phone_number.lstrip("+") + "@")
            vcard = contact.vcard or (
                f"BEGIN:VCARD\nVERSION:3.0\nFN:{contact.name}\n"
                f"TEL;type=CELL;waid={digits}:+{digits}\nEND:VCARD"
            )
            content = wa.Message(
                contactMessage=wa.ContactMessage(
                    displayName=contact.name, vcard=vcard, contextInfo=context
                )
            )
        else:
            media = message.media
            assert media is not None  # the other kinds carry media (the API requires it)
            path = str(media.path)
            if kind == "image":
                content = client.build_image_message(path, caption=message.caption or None)
            elif kind == "video":
                content = client.build_video_message(path, caption=message.caption or None)
            elif kind in ("audio", "voice"):
                content = client.build_audio_message(path, ptt=kind == "voice")
            elif kind == "sticker":
                # A WebP the API checked: sent as it is, not converted (neonize passthrough).
                content = client.build_sticker_message(path, passthrough=True)
            else:
                content = client.build_document_message(
                    path,
                    caption=message.caption or None,
                    filename=media.filename or None,
                    mimetype=media.mime_type,
                )
            if context is not None:
                for field_name in (
                    "imageMessage",
                    "videoMessage",
                    "audioMessage",
                    "documentMessage",
                    "stickerMessage",
                ):
                    if content.HasField(field_name):
                        getattr(content, field_name).contextInfo.CopyFrom(context)
        return client.send_message(to, content)

    async def request_pair_code(self, session_id: str, phone_number: str) -> str:
        session = self._session(session_id)
        if not session.ready.is_set():
            # whatsmeow PairPhone needs the websocket (ErrNotConnected before): a code asked for
            # while the session is still starting waits for it.
            try:
                await asyncio.wait_for(session.ready.wait(), PAIR_WAIT)
            except TimeoutError:
                raise EngineError(
                    "the session is not connected to WhatsApp yet; ask again shortly",
                    code="not_ready",
                ) from None
        if session.state == "closed":
            raise EngineError("the session was stopped", permanent=True, code="not_started")
        if session.state != "linking":  # connected, or reconnecting a linked device
            raise EngineError(
                "the session is already linked", permanent=True, code="already_linked"
            )
        digits = "".join(ch for ch in phone_number if ch.isdigit())
        try:
            code = await self._call(session.client.PairPhone, digits, True)
        except Exception as exc:
            raise EngineError(f"{type(exc).__name__}: {exc}", code="pair_code_failed") from exc
        self.emit(PairCode(session_id, code=code, expires_in=PAIR_CODE_VALID))
        return code

    async def check_numbers(self, session_id: str, phone_numbers: list[str]) -> list[NumberCheck]:
        session = self._session(session_id, connected=True)
        queries = ["+" + "".join(ch for ch in n if ch.isdigit()) for n in phone_numbers]
        try:
            answers = await self._call(lambda: list(session.client.is_on_whatsapp(*queries)))
        except Exception as exc:
            raise EngineError(f"{type(exc).__name__}: {exc}", code="check_failed") from exc
        by_query = {answer.Query: answer for answer in answers}
        results = []
        for number, query in zip(phone_numbers, queries, strict=True):
            answer = by_query.get(query)
            results.append(
                NumberCheck(
                    number,
                    on_whatsapp=bool(answer and answer.IsIn),
                    jid=translate.jid_str(answer.JID) if answer and answer.IsIn else "",
                )
            )
        return results

    async def mark_read(
        self, session_id: str, chat: str, message_ids: list[str], sender: str = ""
    ) -> None:
        session = self._session(session_id, connected=True)

        def mark() -> None:
            from neonize.utils.enum import ReceiptType
            from neonize.utils.jid import build_jid

            chat_user, _, chat_server = chat.partition("@")
            sender_user, _, sender_server = (sender or chat).partition("@")
            session.client.mark_read(
                *message_ids,
                chat=build_jid(chat_user, chat_server),
                sender=build_jid(sender_user, sender_server),
                receipt=ReceiptType.READ,
            )

        await self._checked(mark, "mark_read_failed")

    async def set_presence(self, session_id: str, state: PresenceState) -> None:
        session = self._session(session_id, connected=True)

        def presence() -> None:
            from neonize.utils.enum import Presence as Shown

            shown = Shown.AVAILABLE if state == "available" else Shown.UNAVAILABLE
            session.client.send_presence(shown)

        await self._checked(presence, "presence_failed")

    async def set_chat_presence(self, session_id: str, chat: str, state: ChatState) -> None:
        session = self._session(session_id, connected=True)

        def presence() -> None:
            from neonize.utils.enum import ChatPresence, ChatPresenceMedia
            from neonize.utils.jid import build_jid

            user, _, server = chat.partition("@")
            shown = (
                ChatPresence.CHAT_PRESENCE_PAUSED
                if state == "paused"
                else ChatPresence.CHAT_PRESENCE_COMPOSING
            )
            media = (  # whatsmeow sends `media="audio"` only with composing (presence.go)
                ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO
                if state == "recording"
                else ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
            )
            session.client.send_chat_presence(build_jid(user, server), shown, media)

        await self._checked(presence, "presence_failed")

    async def subscribe_presence(self, session_id: str, chat: str) -> None:
        session = self._session(session_id, connected=True)

        def subscribe() -> None:
            from neonize.utils.jid import build_jid

            user, _, server = chat.partition("@")
            session.client.subscribe_presence(build_jid(user, server))

        await self._checked(subscribe, "presence_failed")

    async def blocklist(self, session_id: str) -> list[Blocked]:
        session = self._session(session_id, connected=True)
        resolve = self._lid_resolver(session.client)
        return await self._checked(
            lambda: translate.blocked_of(session.client.get_blocklist(), resolve),
            "blocklist_failed",
        )

    async def update_blocklist(
        self, session_id: str, jid: str, action: BlockAction
    ) -> list[Blocked]:
        session = self._session(session_id, connected=True)
        resolve = self._lid_resolver(session.client)

        def update() -> list[Blocked]:
            from neonize.utils.enum import BlocklistAction
            from neonize.utils.jid import build_jid

            user, _, server = jid.partition("@")
            change = BlocklistAction.BLOCK if action == "block" else BlocklistAction.UNBLOCK
            return translate.blocked_of(
                session.client.update_blocklist(build_jid(user, server), change), resolve
            )

        try:
            return await self._checked(update, "blocklist_failed")
        except EngineError as exc:
            if "no LID found" in str(exc):  # whatsmeow user.go: not a WhatsApp user
                raise EngineError(str(exc), code="not_on_whatsapp") from exc
            raise

    # --- contacts and the profile (neonize client.py; whatsmeow user.go) ---------------------

    async def contact(self, session_id: str, jid: str) -> ContactInfo:
        session = self._session(session_id, connected=True)
        resolve = self._lid_resolver(session.client)

        def look_up() -> ContactInfo:
            client = session.client
            lid, phone_jid = "", ""
            if is_lid(jid):
                lid = jid
                with contextlib.suppress(Exception):  # unknown to the store: ""
                    phone_jid = resolve(lid)
            else:
                # A usync query: whether the number is on WhatsApp, and its JID.
                [answer] = client.is_on_whatsapp("+" + jid_user(jid))
                if not answer.IsIn:
                    return ContactInfo(jid, phone_number=jid_to_phone(jid))
                phone_jid = translate.jid_str(answer.JID) or jid
            target = _jid(phone_jid or lid)
            # whatsmeow GetUserInfo (usync, user.go): the about text, the picture id, a
            # business's verified name, and the LID, which it stores beside the number.
            info = next(iter(client.get_user_info(target)), None)
            if not lid:
                with contextlib.suppress(Exception):
                    lid = translate.jid_str(client.get_lid_from_pn(target))
            about = info.UserInfo.Status if info is not None else ""
            business = info is not None and info.UserInfo.HasField("VerifiedName")
            known = client.contact.get_contact(target)
            return ContactInfo(
                jid=phone_jid or lid,
                lid=lid if is_lid(lid) else "",
                phone_number=jid_to_phone(phone_jid),
                on_whatsapp=True,
                push_name=(known.PushName or known.FullName) if known.Found else "",
                about=about,
                picture_url=_picture_url(client, target),
                is_business=business,
            )

        return await self._query(session_id, lambda _c, _r: look_up(), "lookup_failed")

    async def phone_of_lid(self, session_id: str, lid: str) -> str:
        session = self._session(session_id, connected=True)
        resolve = self._lid_resolver(session.client)

        def look_up() -> str:
            try:
                return jid_to_phone(resolve(lid))
            except Exception:  # noqa: BLE001 - not in the store: WhatsApp has not told
                return ""

        return await self._checked(look_up, "lookup_failed")

    def _profile_of(self, session: _Session) -> Profile:
        """On the neonize thread: our own name (the push name in the store, as Connected had
        it), about text (a user info query for our own JID) and picture."""
        client, me = session.client, session.client.get_me()
        own = own_jid(me)
        info = next(iter(client.get_user_info(_jid(own))), None)
        return Profile(
            jid=own,
            phone_number=jid_to_phone(own),
            name=me.PushName,
            about=info.UserInfo.Status if info is not None else "",
            picture_url=_picture_url(client, _jid(own)),
        )

    async def profile(self, session_id: str) -> Profile:
        session = self._session(session_id, connected=True)
        return await self._query(
            session_id, lambda _c, _r: self._profile_of(session), "profile_failed"
        )

    async def update_profile(
        self, session_id: str, *, name: str | None = None, about: str | None = None
    ) -> Profile:
        session = self._session(session_id, connected=True)

        def update(client: Any, _resolve: Callable) -> Profile:
            if name is not None:
                # neonize SetPushName: an app state patch (`setting_pushName`) to every device.
                client.set_profile_name(name)
            if about is not None:
                client.set_status_message(about)  # whatsmeow SetStatusMessage
            return self._profile_of(session)

        return await self._query(session_id, update, "profile_failed")

    async def set_profile_picture(self, session_id: str, jpeg_base64: str) -> str:
        data = base64.b64decode(jpeg_base64)
        return await self._query(
            session_id, lambda client, _resolve: client.set_profile_photo(data), "profile_failed"
        )

    # --- groups (neonize client.py; whatsmeow group.go) ---------------------------------------

    async def _query(
        self, session_id: str, function: Callable[[Any, Callable], Any], code: str = "group_failed"
    ) -> Any:
        """`function(client, resolve)` on the neonize thread; its errors get whatsmeow's codes
        (`translate.query_error`), else `code`."""
        session = self._session(session_id, connected=True)
        resolve = self._lid_resolver(session.client)
        try:
            return await self._checked(lambda: function(session.client, resolve), code)
        except EngineError as exc:
            if exc.code != code:
                raise
            known = translate.query_error(str(exc), code)
            permanent = known not in ("not_connected", "rate_limited", "timed_out", code)
            raise EngineError(str(exc), code=known, permanent=permanent) from exc

    async def groups(self, session_id: str) -> list[Group]:
        return await self._query(
            session_id,
            lambda client, resolve: [
                translate.group_of(g, resolve) for g in client.get_joined_groups()
            ],
        )

    async def group_info(self, session_id: str, jid: str) -> Group:
        return await self._query(
            session_id,
            lambda client, resolve: translate.group_of(client.get_group_info(_jid(jid)), resolve),
        )

    async def create_group(
        self, session_id: str, subject: str, participants: list[str]
    ) -> GroupCreated:
        def create(client: Any, resolve: Callable) -> GroupCreated:
            info = client.create_group(subject, [_jid(p) for p in participants])
            # whatsmeow returns each participant's answer in the group's list (with Error set
            # for those not added); the creator is in it too.
            answered = {translate.jid_str(p.JID): p for p in info.Participants}
            answered |= {translate.jid_str(p.PhoneNumber): p for p in info.Participants}
            results = []
            for wanted in participants:
                participant = answered.get(wanted)
                results.append(
                    translate.participant_result(participant, resolve)
                    if participant is not None
                    else ParticipantResult(wanted, jid_to_phone(wanted), status="failed")
                )
            group = translate.group_of(info, resolve)
            added = tuple(m for m in group.participants if m.jid not in _failed(info))
            return GroupCreated(
                group=dataclasses.replace(group, participants=added), participants=tuple(results)
            )

        return await self._query(session_id, create)

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
        def update(client: Any, resolve: Callable) -> Group:
            group = _jid(jid)
            if subject is not None:
                client.set_group_name(group, subject)
            if description is not None:
                # Empty ids: whatsmeow looks the previous topic id up and makes a new one
                # (group.go SetGroupTopic); an empty topic deletes the description.
                client.set_group_topic(group, "", "", description)
            if announce is not None:
                client.set_group_announce(group, announce)
            if locked is not None:
                client.set_group_locked(group, locked)
            return translate.group_of(client.get_group_info(group), resolve)

        return await self._query(session_id, update)

    async def set_group_picture(self, session_id: str, jid: str, jpeg_base64: str) -> str:
        data = base64.b64decode(jpeg_base64)
        return await self._query(
            session_id, lambda client, _resolve: client.set_group_photo(_jid(jid), data)
        )

    async def update_participants(
        self, session_id: str, jid: str, action: ParticipantAction, participants: list[str]
    ) -> list[ParticipantResult]:
        def update(client: Any, resolve: Callable) -> list[ParticipantResult]:
            from neonize.utils.enum import ParticipantChange

            change = ParticipantChange(action)
            answers = client.update_group_participants(
                _jid(jid), [_jid(p) for p in participants], change
            )
            return [translate.participant_result(p, resolve) for p in answers]

        return await self._query(session_id, update)

    async def group_invite_link(self, session_id: str, jid: str, revoke: bool = False) -> str:
        return await self._query(
            session_id, lambda client, _resolve: client.get_group_invite_link(_jid(jid), revoke)
        )

    async def join_group(self, session_id: str, link: str) -> str:
        return await self._query(
            session_id,
            lambda client, _resolve: translate.jid_str(client.join_group_with_link(link)),
        )

    async def leave_group(self, session_id: str, jid: str) -> None:
        await self._query(session_id, lambda client, _resolve: client.leave_group(_jid(jid)))

    async def download(self, session_id: str, media: InboundMedia, into: Path) -> int:
        session = self._session(session_id, connected=True)

        def fetch() -> int:
            from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

            message = wa.Message.FromString(base64.b64decode(media.ref["message"]))
            session.client.download_any(message, str(into))  # neonize writes the file
            return Path(into).stat().st_size

        return await self._checked(fetch, "media_unavailable")

    async def probe(self, session_id: str) -> None:
        """A usync query for our own number: a round trip WhatsApp must answer."""
        session = self._session(session_id, connected=True)
        own = "+" + jid_user(own_jid(session.me))
        await self._checked(lambda: session.client.is_on_whatsapp(own), "probe_failed")

    async def _checked(self, function, code: str) -> Any:
        try:
            return await self._call(function)
        except EngineError:
            raise
        except Exception as exc:
            text = exc.args[0] if exc.args else ""
            if isinstance(text, bytes):  # neonize raises some Go errors with their bytes
                text = text.decode(errors="replace")
            raise EngineError(f"{type(exc).__name__}: {text or exc}", code=code) from exc

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.stop(session_id)
        self._calls.shutdown(wait=False, cancel_futures=True)
