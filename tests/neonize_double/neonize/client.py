"""neonize.client.NewClient, and beneath it what neonize's Go side (goneonize/main.go) and whatsmeow
do, against `tests/neonize_double/whatsapp.py` in place of WhatsApp's servers.

Each behaviour names its source; BEHAVIOURS.md has the citations in full (file, function, lines).
The ones that shape the gateway most:

- `connect()` blocks for the connection's whole life and returns only after `stop()` (PY
  connect_with_proxy; NZ Neonize → CallbackFunction). A first connect that cannot reach the servers
  raises NeonizeError at once (InitialAutoReconnect is off). Once connected, whatsmeow reconnects
  by itself after a drop (0, 2, 4 … s), dispatching one Disconnected and then Connected.
- A new device gets six QR refs: the first code lives 60 s, each later one 20 s (qrchan.go
  emitQRs); codes reach `event.qr` one at a time on the Go thread; after the last comes "timeout"
  and a Disconnect, and then FetchMe waits for a device id that never comes: `connect()` never
  returns, not even after `stop()`. `stop()` while codes are coming stops them without closing the
  channel: `connect()` never returns either (qrchan.go L109-114).
- Events of a fresh device are held until the QR loop ends (NZ: CallbackFunction starts after it).
- After a scan: PairSuccess (neonize PairStatusEv), stream error 515, a new login (no
  Disconnected), Connected.
- `get_me()` and `get_pn_from_lid()` on a client `stop()` removed (or before `connect()`)
  dereference nil in Go: the process aborts (exit 134). `get_pn_from_lid()` also aborts on a
  device that is not paired.
- The Go side keeps its clients in maps without locks: two calls from different threads at once
  abort the process ("fatal error: concurrent map read and map write"). The double is stricter
  than the race: any overlap aborts.
- `send_message()` learns the message id from the server's ack (no caller-chosen id).
- LoggedOut, StreamReplaced, TemporaryBan and ClientOutdated do not end `connect()`, and nothing
  reconnects after them; no Disconnected follows StreamReplaced.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import random
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .events import INT_TO_EVENT, Event
from .exc import (
    DownloadError,
    GetBlocklistError,
    GetJIDFromStoreError,
    IsOnWhatsAppError,
    LogoutError,
    MarkReadError,
    NeonizeError,
    PairPhoneError,
    SendMessageError,
    SendPresenceError,
    SubscribePresenceError,
    UpdateBlocklistError,
)
from .proto import Neonize_pb2 as neonize_proto
from .proto.Neonize_pb2 import JID, Device, SendResponse
from .proto.waCommon.WACommon_pb2 import MessageKey
from .proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    DocumentMessage,
    ImageMessage,
    Message,
    ReactionMessage,
    VideoMessage,
)
from .utils.jid import Jid2String, build_jid, parse

# The double's clock: 1.0 is WhatsApp's; tests shorten it.
SCALE = float(os.environ.get("NEONIZE_DOUBLE_TIME_SCALE", "1"))
QR_FIRST, QR_NEXT = 60.0, 20.0  # whatsmeow qrchan.go emitQRs
# whatsmeow keepalive.go: KeepAliveIntervalMin/Max, KeepAliveResponseDeadline, KeepAliveMaxFailTime
KEEPALIVE_MIN, KEEPALIVE_MAX, KEEPALIVE_DEADLINE, KEEPALIVE_MAX_FAIL = 20.0, 30.0, 10.0, 180.0
MEDIA_FIELDS = ("imageMessage", "videoMessage", "audioMessage", "documentMessage", "stickerMessage")
EVENT_BUFFER = 100  # NZ main.go: eventChan := make(chan …, 100)
TEMP_BAN_CODES = {101: 1, 102: 2, 103: 3, 104: 4, 106: 5}  # NZ utils/encoder.go
LOGGED_OUT, MAIN_DEVICE_GONE, UNKNOWN_LOGOUT = 2, 4, 5  # neonize ConnectFailureReason
FAILURE_REASONS = {401: LOGGED_OUT, 403: MAIN_DEVICE_GONE, 406: UNKNOWN_LOGOUT}

_clients: dict[str, _Go] = {}  # NZ main.go: var clients = make(map[string]*whatsmeow.Client)
_access = threading.Lock()
_readers = 0
_writing = False


def _abort(message: str) -> None:
    """A Go panic in the shared library: the whole process dies (SIGABRT, exit code 134)."""
    print(message, file=sys.stderr, flush=True)
    os.abort()


@contextlib.contextmanager
def _maps(*, write: bool = False) -> Iterator[None]:
    """Go's runtime check on its unlocked maps: a write while anyone else reads or writes them is
    `fatal error: concurrent map read and map write` (NZ main.go has no lock around `clients`)."""
    global _readers, _writing
    with _access:
        if _writing or (write and _readers):
            _abort("fatal error: concurrent map read and map write")
        if write:
            _writing = True
        else:
            _readers += 1
    try:
        yield
    finally:
        with _access:
            if write:
                _writing = False
            else:
                _readers -= 1


def _jid_proto(value: str) -> JID:
    return (
        parse(value)
        if value
        else JID(User="", Device=0, Integrator=0, IsEmpty=True, RawAgent=0, Server="")
    )


class _Store:
    """The device store (whatsmeow sqlstore): a SQLite file, the gateway snapshots it."""

    def __init__(self, path: str) -> None:
        self.path = path
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS whatsmeow_device (jid TEXT, lid TEXT, push_name TEXT)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS whatsmeow_lid_map (lid TEXT PRIMARY KEY, pn TEXT)"
            )

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def device(self) -> tuple[str, str, str]:
        with self._db() as db:
            row = db.execute("SELECT jid, lid, push_name FROM whatsmeow_device").fetchone()
        return tuple(row) if row else ("", "", "")

    def save(self, jid: str, lid: str, push_name: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM whatsmeow_device")
            db.execute("INSERT INTO whatsmeow_device VALUES (?, ?, ?)", (jid, lid, push_name))

    def delete(self) -> None:
        """whatsmeow Store.Delete on logout: the device is gone, the file stays."""
        with self._db() as db:
            db.execute("DELETE FROM whatsmeow_device")
            db.execute("DELETE FROM whatsmeow_lid_map")

    def put_lid(self, lid: str, pn: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO whatsmeow_lid_map VALUES (?, ?)", (lid, pn))

    def lid_for_pn(self, pn: str) -> str:
        with self._db() as db:
            row = db.execute("SELECT lid FROM whatsmeow_lid_map WHERE pn = ?", (pn,)).fetchone()
        return row[0] if row else ""

    def pn_for_lid(self, lid: str) -> str:
        with self._db() as db:
            row = db.execute("SELECT pn FROM whatsmeow_lid_map WHERE lid = ?", (lid,)).fetchone()
        return row[0] if row else ""


class _Go:
    """One whatsmeow client and its Neonize() goroutine."""

    def __init__(self, client: NewClient) -> None:
        self.client = client
        self.store = _Store(client.name)
        self.jid, self.lid, self.push_name = self.store.device()
        self.sock: socket.socket | None = None
        self.handshaking: socket.socket | None = None  # dialled, login not answered yet
        self.reader: threading.Thread | None = None
        self.expected_disconnect = False
        self.cancelled = threading.Event()  # the ctx Stop() cancels
        self.events: queue.Queue = queue.Queue(EVENT_BUFFER)
        self.qr: queue.Queue | None = None  # the QR channel while linking
        self.stop_qrs = threading.Event()
        self.pending: dict[int, tuple[threading.Event, dict]] = {}
        self.ids = iter(range(1, 1 << 62))
        self.write_lock = threading.Lock()
        self.reconnect_errors = 0

    # --- the socket to the servers ----------------------------------------------------------

    def _dial(self) -> socket.socket:
        path = os.environ.get("NEONIZE_DOUBLE_SOCKET", "")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise OSError(
                "failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send "
                f'handshake request: Get "https://web.whatsapp.com/ws/chat": {exc}'
            ) from None
        return sock

    def _connect(self) -> dict:
        """whatsmeow Connect(): open the socket, log in; the answer of the login."""
        sock = self._dial()
        self.expected_disconnect = False
        reader = sock.makefile("rb")
        self.reader = threading.Thread(target=self._read, args=(sock, reader), daemon=True)
        self.reader.start()
        # client.go connect(): cli.socket is set once the handshake is done; until then every
        # IQ (PairPhone, …) fails with ErrNotConnected. The login's answer ends the handshake.
        self.handshaking = sock
        try:
            answer = self._rpc("login", sock=sock, uuid=self.client.uuid, jid=self.jid or None)
        finally:
            self.handshaking = None
        if self.expected_disconnect:  # Disconnect() came during the handshake: it closed it
            raise ConnectionError("websocket disconnected before info query returned response")
        self.sock = sock
        return answer

    def media_request(self, **fields: Any) -> dict:
        """download.go: media come over HTTPS from the media servers (mmg.whatsapp.net), not
        over the websocket: one connection per download, so a large one delays nothing else."""
        sock = self._dial()
        try:
            sock.sendall((json.dumps({"req": 0, "op": "download", **fields}) + "\n").encode())
            with sock.makefile("rb") as reader:
                return json.loads(reader.readline())
        finally:
            sock.close()

    def _send_line(self, message: dict, sock: socket.socket | None = None) -> None:
        sock = sock or self.sock
        if sock is None:
            raise ConnectionError("websocket not connected")
        with self.write_lock:
            sock.sendall((json.dumps(message) + "\n").encode())

    def _rpc(
        self, op: str, timeout: float = 30, sock: socket.socket | None = None, **fields: Any
    ) -> dict:
        request_id = next(self.ids)
        done = threading.Event()
        self.pending[request_id] = (done, {})
        try:
            self._send_line({"req": request_id, "op": op, **fields}, sock)
        except OSError:
            self.pending.pop(request_id, None)
            raise ConnectionError("websocket not connected") from None
        if not done.wait(timeout):
            self.pending.pop(request_id, None)
            raise TimeoutError("info query timed out")
        answer = self.pending.pop(request_id)[1]
        if answer.get("closed"):
            raise ConnectionError("websocket disconnected before info query returned response")
        return answer

    def disconnect(self) -> None:
        """whatsmeow Disconnect(): expected, so no Disconnected event (client.go onDisconnect)."""
        self.expected_disconnect = True
        self.stop_qrs.set()
        sock, self.sock = self.sock, None
        self._clear_waiters()  # unlockedDisconnect: clearResponseWaiters(xmlStreamEndNode)
        for open_socket in (sock, self.handshaking):
            if open_socket is not None:
                try:
                    open_socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                open_socket.close()

    def _read(self, sock: socket.socket, reader: Any) -> None:
        try:
            for line in reader:
                message = json.loads(line)
                if "res" in message:
                    waiting = self.pending.get(message["res"])
                    if waiting is not None:
                        waiting[1].update(message)
                        waiting[0].set()
                    continue
                self._on_push(message)
        except (OSError, ValueError):
            pass
        # client.go onDisconnect: only the current socket's end clears the response waiters (a
        # socket Disconnect() closed already did; the requests waiting now are the next one's).
        current = self.sock is sock  # not current: Disconnect() closed it, or a new login did
        if current:
            self.sock = None
        if current or sock is self.handshaking:  # a handshake that fails fails at once
            self._clear_waiters()
        if current and not self.expected_disconnect and not self.cancelled.is_set():
            # client.go onDisconnect: an unexpected close → Disconnected, then autoReconnect.
            self._dispatch(neonize_proto.Disconnected(status=True))
            threading.Thread(target=self._auto_reconnect, daemon=True).start()

    def _clear_waiters(self) -> None:
        for done, answer in list(self.pending.values()):
            answer["closed"] = True
            done.set()

    def _auto_reconnect(self) -> None:
        """client.go autoReconnect: (errors * 2 s) between tries; the wait ends with the ctx
        (Stop) and nothing reconnects after an expected disconnect."""
        while not self.expected_disconnect and not self.cancelled.is_set():
            if self.cancelled.wait(self.reconnect_errors * 2 * SCALE) or self.expected_disconnect:
                return
            self.reconnect_errors += 1
            try:
                answer = self._connect()
            except (OSError, ConnectionError, TimeoutError):
                continue
            if self.cancelled.is_set():  # stopped while the handshake ran
                self.disconnect()
                return
            self._after_login(answer)
            return

    def _after_login(self, answer: dict) -> None:
        if answer.get("ok"):
            self.reconnect_errors = 0
            if answer.get("pair_device"):
                self._start_qrs(answer["pair_device"])
            else:
                self._dispatch(neonize_proto.Connected(status=True))  # handleConnectSuccess
                keepalive = threading.Thread(target=self._keepalive, args=(self.sock,), daemon=True)
                keepalive.start()
            return
        failure = answer.get("failure")
        self.expected_disconnect = True  # handleConnectFailure: no reconnect after a failure
        if failure in FAILURE_REASONS:
            self.store.delete()  # connectionevents.go: the store is deleted on a logged-out failure
            self.jid = ""
            self._dispatch(neonize_proto.LoggedOut(OnConnect=True, Reason=FAILURE_REASONS[failure]))
        elif failure == 402:
            code = TEMP_BAN_CODES.get(answer.get("code", 101), 1)
            self._dispatch(neonize_proto.TemporaryBan(Code=code, Expire=answer.get("expire", 0)))
        elif failure == 405:
            self._dispatch(neonize_proto.ClientOutdated())
        self.disconnect()

    def _keepalive(self, sock: socket.socket | None) -> None:
        """whatsmeow keepalive.go keepAliveLoop: a ping every 20-30 s with a 10 s deadline;
        each miss is a KeepAliveTimeout, the first answer after misses a KeepAliveRestored;
        3 minutes without an answer: Disconnect() (no Disconnected event) and autoReconnect."""
        errors, last_success = 0, time.time()
        while self.sock is sock and sock is not None and not self.cancelled.is_set():
            time.sleep(random.uniform(KEEPALIVE_MIN, KEEPALIVE_MAX) * SCALE)  # noqa: S311
            if self.sock is not sock:
                return
            try:
                # Never under a second, however fast the clock: a busy test machine must not
                # miss a ping that the fake servers answered.
                self._rpc("ping", timeout=max(1.0, KEEPALIVE_DEADLINE * SCALE))
            except (ConnectionError, TimeoutError):
                errors += 1
                self._dispatch(
                    neonize_proto.KeepAliveTimeout(ErrorCount=errors, LastSuccess=int(last_success))
                )
                if time.time() - last_success > KEEPALIVE_MAX_FAIL * SCALE and self.sock is sock:
                    self.disconnect()
                    self.expected_disconnect = False
                    threading.Thread(target=self._auto_reconnect, daemon=True).start()
                    return
                continue
            if errors:
                self._dispatch(neonize_proto.KeepAliveRestored())
            errors, last_success = 0, time.time()

    def _on_push(self, message: dict) -> None:
        kind = message.get("push")
        if kind == "pair_success":
            self.jid, self.lid = message["jid"], message.get("lid", "")
            self.store.save(self.jid, self.lid, self.push_name)
            if self.lid:
                self.store.put_lid(self.lid.partition("@")[0], self.jid.partition("@")[0])
            self._dispatch(
                neonize_proto.PairStatus(
                    ID=_jid_proto(self.jid), BusinessName="", Platform="android", Status=2
                )
            )
            self.stop_qrs.set()
            if self.qr is not None:
                self.qr.put(("success", None))
                self.qr.put(None)  # the channel closes
        elif kind == "stream_error" and message.get("code") == 515:
            # handleStreamError: Disconnect(), then connect again as the new device (no event).
            def restart() -> None:
                self.disconnect()
                if not self.cancelled.is_set():
                    self._after_login(self._connect())

            threading.Thread(target=restart, daemon=True).start()
        elif kind == "stream_error" and message.get("conflict") == "device_removed":
            self.expected_disconnect = True
            self.store.delete()
            self.jid = ""
            self._dispatch(neonize_proto.LoggedOut(OnConnect=False, Reason=LOGGED_OUT))
            self.disconnect()
        elif kind == "stream_error" and message.get("conflict") == "replaced":
            self.expected_disconnect = True  # so no Disconnected follows (client.go L595-601)
            self._dispatch(neonize_proto.StreamReplaced())
            self.disconnect()
        elif kind == "push_name":
            # appstate.go dispatchAppState, `setting_pushName`: Store.PushName, saved.
            self.push_name = message["name"]
            self.store.save(self.jid, self.lid, self.push_name)
        elif kind in (17, 18, 19, 20, 30):
            event = INT_TO_EVENT[kind].FromString(base64.b64decode(message["event"]))
            if kind == 17 and event.Info.MessageSource.SenderAlt.User:
                source = event.Info.MessageSource
                if source.Sender.Server == "lid":
                    self.store.put_lid(source.Sender.User, source.SenderAlt.User)
            self._dispatch(event)

    def _dispatch(self, event: Any) -> None:
        """whatsmeow dispatchEvent → neonize's handler: only subscribed codes are forwarded;
        the buffer holds 100 and a full one blocks the dispatcher."""
        from .events import EVENT_TO_INT

        code = EVENT_TO_INT[type(event)]
        if code == 0 or code in self.client.event.list_func:
            self.events.put((code, event))

    # --- QR codes (whatsmeow qrchan.go) --------------------------------------------------------

    def _start_qrs(self, refs: list[str]) -> None:
        self.qr = queue.Queue()
        self.stop_qrs.clear()
        threading.Thread(target=self._emit_qrs, args=(refs, self.qr), daemon=True).start()

    def _emit_qrs(self, refs: list[str], channel: queue.Queue) -> None:
        valid = QR_FIRST if len(refs) == 6 else QR_NEXT
        for ref in refs:
            channel.put(("code", f"2@{ref},double,{self.client.uuid}"))
            if self.stop_qrs.wait(valid * SCALE):
                return  # stopQRs / expectedDisconnect: returns without closing the channel
            valid = QR_NEXT
        channel.put(("timeout", None))
        channel.put(None)  # closed
        self.disconnect()

    # --- Neonize() and CallbackFunction (NZ main.go) -------------------------------------------

    def neonize(self) -> str:
        try:
            answer = self._connect()
        except (OSError, ConnectionError, TimeoutError) as exc:
            return str(exc)
        if not self.jid:
            self._after_login(answer)
        else:
            # An existing device: Connect() returns once the socket is up, and the login's
            # outcome (success, or a failure such as 401) arrives after FetchMe has read the
            # device id from the store.
            threading.Timer(0.05, self._after_login, args=(answer,)).start()
        if self.qr is not None:  # a new device: `for evt := range qrChan`
            while (item := self.qr.get()) is not None:
                kind, code = item
                if kind == "code":
                    self.client.event._qr(self.client, code.encode())
                else:
                    print("Login event:", kind, flush=True)
        return self._callback_function()

    def _callback_function(self) -> str:
        while not self.jid:  # FetchMe: `for cli.ID == nil { time.Sleep(100ms) }`, no ctx check
            time.sleep(0.1)
        device = Device(
            JID=_jid_proto(self.jid),
            LID=_jid_proto(self.lid),
            Platform="android",
            BussinessName="",
            PushName=self.push_name,
            Initialized=True,
        )
        self.client.event.execute(0, device)
        while not self.cancelled.is_set():
            try:
                code, event = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            self.client.event.execute(code, event)
        return ""


def _client_of(uuid: str) -> _Go | None:
    """`clients[C.GoString(id)]`, as every exported function starts."""
    with _maps():
        return _clients.get(uuid)


class NewClient:
    def __init__(
        self, name: str, jid: JID | None = None, props: Any = None, uuid: str | None = None
    ):
        self.name = name
        self.uuid = uuid or name
        self.event = Event(self)
        self.qr = self.event.qr
        self.me: Device | None = None
        self.connected = False

    # --- the connection ----------------------------------------------------------------------

    def connect(self) -> None:
        """Blocks for the connection's life (PY connect_with_proxy runs Go's Neonize on a
        non-daemon thread and waits for it); NeonizeError when Neonize returns an error."""
        go = _Go(self)
        with _maps(write=True):
            _clients[self.uuid] = go  # NZ main.go L654, before Connect()
        result: dict[str, str] = {}
        worker = threading.Thread(target=lambda: result.update(error=go.neonize()), daemon=False)
        worker.start()
        worker.join()
        if result.get("error"):
            raise NeonizeError(result["error"])

    def stop(self) -> None:
        """NZ main.go Stop: Disconnect(), delete(clients, id), cancel the ctx."""
        with _maps(write=True):
            go = _clients.pop(self.uuid, None)
        if go is not None:
            go.disconnect()
            go.cancelled.set()

    def disconnect(self) -> None:
        go = _client_of(self.uuid)
        if go is not None:
            go.disconnect()

    def is_connected(self) -> bool:
        go = _client_of(self.uuid)
        return bool(go and go.sock is not None)

    def get_me(self) -> Device:
        go = _client_of(self.uuid)
        if go is None:  # NZ main.go GetMe: clients[id].Store with no nil check
            _abort("panic: runtime error: invalid memory address or nil pointer dereference")
        return Device(
            JID=_jid_proto(go.jid) if go.jid else None,
            LID=_jid_proto(go.lid),
            Platform="android",
            BussinessName="",
            PushName=go.push_name,
            Initialized=bool(go.jid),
        )

    # --- sending -------------------------------------------------------------------------------

    def _connected_go(self, error: type[Exception], nil: str = "client is nil") -> _Go:
        go = _client_of(self.uuid)
        if go is None:
            raise error(nil)
        return go

    def send_message(self, to: JID | str, message: Message | str, **options: Any) -> SendResponse:
        go = self._connected_go(SendMessageError)
        if not go.jid:
            raise SendMessageError("the store doesn't contain a device JID")
        if isinstance(message, str):
            message = Message(conversation=message)
        target = to if isinstance(to, str) else Jid2String(to)
        if ":" in target.partition("@")[0]:
            raise SendMessageError("message recipient must be a user JID with no device part")
        try:
            answer = go._rpc(
                "send",
                to=target,
                message=base64.b64encode(message.SerializeToString()).decode(),
                timeout=75 * SCALE,
            )
        except TimeoutError:
            raise SendMessageError("timed out waiting for message send response") from None
        except ConnectionError as exc:
            raise SendMessageError(str(exc)) from None
        if "error" in answer:
            raise SendMessageError(answer["error"])
        timings = neonize_proto.MessageDebugTimings(
            Queue=0, Marshal=0, GetParticipants=0, GetDevices=0, GroupEncrypt=0,
            PeerEncrypt=0, Send=0, Resp=0, Retry=0,
        )  # fmt: skip
        return SendResponse(
            Timestamp=answer["t"], ID=answer["id"], ServerID=0, DebugTimings=timings,
            Message=message,
        )  # fmt: skip

    def build_reaction(self, chat: JID, sender: JID, message_id: str, reaction: str) -> Message:
        """whatsmeow BuildReaction/BuildMessageKey (send.go): FromMe when the sender is empty or
        our own user; Participant only outside one-to-one chats."""
        go = _client_of(self.uuid)
        own = {(go.jid or "").partition("@")[0], (go.lid or "").partition("@")[0]} if go else set()
        own.discard("")
        key = MessageKey(fromMe=True, ID=message_id, remoteJID=Jid2String(chat))
        if sender.User and sender.User not in own:
            key.fromMe = False
            if chat.Server not in ("s.whatsapp.net", "lid", "msgr"):
                key.participant = Jid2String(sender)
        return Message(
            reactionMessage=ReactionMessage(
                key=key, text=reaction, senderTimestampMS=int(time.time() * 1000)
            )
        )

    def _upload(self, file: str | bytes) -> tuple[bytes, str, str]:
        import filetype

        data = Path(file).read_bytes() if isinstance(file, str) else file
        go = self._connected_go(SendMessageError)
        try:
            answer = go._rpc("upload", data=base64.b64encode(data).decode())
        except ConnectionError as exc:
            raise SendMessageError(f"failed to upload media: {exc}") from None
        return data, answer["direct_path"], filetype.guess_mime(data) or "application/octet-stream"

    def _media_fields(self, data: bytes, direct_path: str, mimetype: str) -> dict[str, Any]:
        return {
            "URL": "https://mmg.whatsapp.net" + direct_path,
            "directPath": direct_path,
            "mimetype": mimetype,
            "fileLength": len(data),
            "fileSHA256": hashlib.sha256(data).digest(),
            "fileEncSHA256": hashlib.sha256(b"enc" + data).digest(),
            "mediaKey": os.urandom(32),
            "mediaKeyTimestamp": int(time.time()),
        }

    def build_image_message(
        self, file: str | bytes, caption: str | None = None, **_: Any
    ) -> Message:
        data, path, mimetype = self._upload(file)
        fields = self._media_fields(data, path, mimetype)
        return Message(imageMessage=ImageMessage(caption=caption or "", **fields))

    def build_video_message(
        self, file: str | bytes, caption: str | None = None, **_: Any
    ) -> Message:
        data, path, mimetype = self._upload(file)
        fields = self._media_fields(data, path, mimetype)
        return Message(videoMessage=VideoMessage(caption=caption or "", **fields))

    def build_audio_message(self, file: str | bytes, ptt: bool = False, **_: Any) -> Message:
        data, path, mimetype = self._upload(file)
        fields = self._media_fields(data, path, mimetype)
        return Message(audioMessage=AudioMessage(PTT=ptt, **fields))

    def build_document_message(
        self,
        file: str | bytes,
        caption: str | None = None,
        title: str | None = None,
        filename: str | None = None,
        mimetype: str | None = None,
        **_: Any,
    ) -> Message:
        data, path, sniffed = self._upload(file)
        fields = self._media_fields(data, path, mimetype or sniffed)
        return Message(
            documentMessage=DocumentMessage(
                caption=caption or "", title=title or "", fileName=filename or "", **fields
            )
        )

    # --- the rest of what the gateway calls ----------------------------------------------------

    def PairPhone(self, phone: str, show_push_notification: bool, *_: Any, **__: Any) -> str:
        """whatsmeow pair-code.go PairPhone: the number is checked first, then the IQ needs the
        websocket (ErrNotConnected)."""
        go = self._connected_go(
            PairPhoneError,
            "client is nil: ensure client is connected before calling PairPhone, or pass "
            "pairphone to connect()",
        )
        digits = "".join(ch for ch in phone if ch.isdigit())
        if len(digits) <= 6:
            raise PairPhoneError("phone number too short")
        if digits.startswith("0"):
            raise PairPhoneError("international phone number required (must not start with 0)")
        try:
            return go._rpc("pair_phone", phone=digits, timeout=75 * SCALE)["code"]
        except (ConnectionError, TimeoutError) as exc:
            raise PairPhoneError(str(exc)) from None

    def is_on_whatsapp(self, *numbers: str) -> list[Any]:
        if not numbers:
            return []
        go = self._connected_go(IsOnWhatsAppError)
        try:
            answer = go._rpc("usync", numbers=list(numbers))
        except (ConnectionError, TimeoutError) as exc:
            raise IsOnWhatsAppError(f"failed to send usync query: {exc}") from None
        results = [
            neonize_proto.IsOnWhatsAppResponse(
                Query=r["query"], JID=_jid_proto(r["jid"]), IsIn=r["in"]
            )
            for r in answer["results"]
        ]
        if not results:
            raise IsOnWhatsAppError("Function returned nothing.")
        return results

    def mark_read(
        self, *message_ids: str, chat: JID, sender: JID, receipt: Any, timestamp: int | None = None
    ) -> None:
        go = self._connected_go(MarkReadError)
        if not message_ids:
            raise MarkReadError("no message IDs specified")
        try:
            go._rpc(
                "mark_read",
                ids=list(message_ids),
                chat=Jid2String(chat),
                sender=Jid2String(sender),
                type=receipt.value.decode() if isinstance(receipt.value, bytes) else receipt.value,
            )
        except (ConnectionError, TimeoutError) as exc:
            raise MarkReadError(str(exc)) from None

    def _node(self, op: str, error: type[Exception], *, raw: bool = False, **fields: Any) -> None:
        """whatsmeow sendNode: written to the socket, no answer awaited; ErrNotConnected without
        one. neonize returns the Go error's text decoded, except from send_presence (`raw`:
        PY client.py L3320-3322 raises with the bytes as they came)."""
        go = self._connected_go(error)
        try:
            go._send_line({"req": 0, "op": op, **fields})
        except (ConnectionError, OSError):
            message = "websocket not connected"
            raise error(message.encode() if raw else message) from None

    def send_chat_presence(self, jid: JID, state: Any, media: Any) -> None:
        """whatsmeow SendChatPresence (presence.go): `<chatstate to=…><composing|paused/>`, with
        `media` only on composing; neonize passes its enums' values (0/1), which goneonize maps
        by index (utils.go), and raises SendPresenceError (PY client.py send_chat_presence)."""
        self._node(
            "chatstate",
            SendPresenceError,
            jid=Jid2String(jid),
            state=["composing", "paused"][state.value],
            media="audio" if state.value == 0 and media.value == 1 else "",
        )

    def send_presence(self, presence: Any) -> None:
        """whatsmeow SendPresence (presence.go): refused without a push name (ErrNoPushName,
        errors.go); neonize passes Presence's bytes value (PY client.py send_presence)."""
        go = self._connected_go(SendPresenceError)
        if not go.push_name:
            raise SendPresenceError(b"can't send presence without PushName set")
        self._node("presence", SendPresenceError, raw=True, type=presence.value.decode())

    def subscribe_presence(self, jid: JID) -> None:
        """whatsmeow SubscribePresence (presence.go): `<presence type="subscribe" to=…>`; without
        a privacy token it is sent all the same (only logged)."""
        self._node("subscribe", SubscribePresenceError, jid=Jid2String(jid))

    def _blocklist_of(self, answer: dict) -> Any:
        """goneonize EncodeBlocklist: DHash and the JIDs (encoder.go)."""
        return neonize_proto.Blocklist(
            DHash=answer["dhash"], JIDs=[_jid_proto(jid) for jid in answer["jids"]]
        )

    def get_blocklist(self) -> Any:
        """whatsmeow GetBlocklist (user.go): an IQ `blocklist` get; its `<list>` of `<item jid>`
        (@lid JIDs these days). Errors come in GetBlocklistReturnFunction.Error (PY L3114)."""
        go = self._connected_go(GetBlocklistError)
        try:
            answer = go._rpc("blocklist_get")
        except (ConnectionError, TimeoutError) as exc:
            raise GetBlocklistError(str(exc)) from None
        return self._blocklist_of(answer)

    def update_blocklist(self, jid: JID, action: Any) -> Any:
        """whatsmeow UpdateBlocklist (user.go): the item is keyed by the user's LID, taken from
        the store or else from a user info query (which stores the mapping), "no LID found for
        %s from server" when WhatsApp has none; a block also names the phone number (`pn_jid`).
        Returns the list the server answers with."""
        go = self._connected_go(UpdateBlocklistError)
        target = Jid2String(jid)
        try:
            if jid.Server == "s.whatsapp.net":
                lid_user = go.store.lid_for_pn(jid.User)
                if not lid_user:
                    found = go._rpc("user_lid", jid=target)
                    if not found.get("lid"):
                        raise UpdateBlocklistError(f"no LID found for {target} from server")
                    lid_user = found["lid"].partition("@")[0]
                    go.store.put_lid(lid_user, jid.User)
                target = f"{lid_user}@lid"
            answer = go._rpc("blocklist_set", jid=target, action=action.value)
        except (ConnectionError, TimeoutError) as exc:
            raise UpdateBlocklistError(str(exc)) from None
        return self._blocklist_of(answer)

    def download_any(self, message: Message, path: str | None = None) -> bytes | None:
        """whatsmeow DownloadAny: only top-level media; the whole file in memory."""
        media = next(
            (
                getattr(message, f)
                for f in MEDIA_FIELDS
                if message.HasField(f)
            ),
            None,
        )  # fmt: skip
        if media is None:
            raise DownloadError("didn't find any attachments in message")
        go = self._connected_go(DownloadError)
        try:
            answer = go.media_request(direct_path=media.directPath)
        except (OSError, ValueError) as exc:
            raise DownloadError(f"failed to download media: {exc}") from None
        if "error" in answer:
            raise DownloadError(answer["error"])
        data = base64.b64decode(answer["data"])
        if path is not None:
            Path(path).write_bytes(data)
            return None
        return data

    def get_pn_from_lid(self, jid: JID) -> JID:
        """NZ main.go GetPNFromLID: clients[id].Store.LIDs with no nil check (aborts when the
        client is gone or not paired); an unknown LID is an empty JID, no error."""
        go = _client_of(self.uuid)
        if go is None or not go.jid:
            _abort("panic: runtime error: invalid memory address or nil pointer dereference")
        if jid.Server != "lid":
            raise GetJIDFromStoreError(
                f"invalid GetPNForLID call with non-LID JID {Jid2String(jid)}"
            )
        pn = go.store.pn_for_lid(jid.User)
        return build_jid(pn) if pn else _jid_proto("")

    def logout(self) -> None:
        """whatsmeow Logout: needs the device and the socket; no LoggedOut event after it."""
        go = self._connected_go(LogoutError)
        if not go.jid:
            raise LogoutError("the store doesn't contain a device JID")
        try:
            go._rpc("logout")
        except (ConnectionError, TimeoutError) as exc:
            raise LogoutError(f"error sending logout request: {exc}") from None
        go.disconnect()
        go.store.delete()
        go.jid = ""
