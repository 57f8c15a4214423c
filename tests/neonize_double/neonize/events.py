"""neonize/events.py: the event classes (neonize's own protobuf messages), their codes, and the
registration of handlers (`client.event(EventType)(handler)`, `client.event.qr(handler)`).

As in neonize 0.5.2 (events.py EventsManager / Event.execute): a handler is kept per event code;
code 0 (Device) sets `client.me` and reaches no handler; code 3 (Connected) also sets
`client.connected`; only subscribed codes are forwarded by the Go side at all (client.py passes
`list_func` as the subscriber list to `Neonize`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .proto.Neonize_pb2 import QR as QREv
from .proto.Neonize_pb2 import BlocklistEvent as BlocklistEv
from .proto.Neonize_pb2 import ChatPresence as ChatPresenceEv
from .proto.Neonize_pb2 import ClientOutdated as ClientOutdatedEv
from .proto.Neonize_pb2 import Connected as ConnectedEv
from .proto.Neonize_pb2 import ConnectFailure as ConnectFailureEv
from .proto.Neonize_pb2 import Device
from .proto.Neonize_pb2 import Disconnected as DisconnectedEv
from .proto.Neonize_pb2 import GroupInfoEvent as GroupInfoEv
from .proto.Neonize_pb2 import HistorySync as HistorySyncEv
from .proto.Neonize_pb2 import JoinedGroup as JoinedGroupEv
from .proto.Neonize_pb2 import KeepAliveRestored as KeepAliveRestoredEv
from .proto.Neonize_pb2 import KeepAliveTimeout as KeepAliveTimeoutEv
from .proto.Neonize_pb2 import LoggedOut as LoggedOutEv
from .proto.Neonize_pb2 import Message as MessageEv
from .proto.Neonize_pb2 import PairStatus as PairStatusEv
from .proto.Neonize_pb2 import Picture as PictureEv
from .proto.Neonize_pb2 import Presence as PresenceEv
from .proto.Neonize_pb2 import Receipt as ReceiptEv
from .proto.Neonize_pb2 import StreamError as StreamErrorEv
from .proto.Neonize_pb2 import StreamReplaced as StreamReplacedEv
from .proto.Neonize_pb2 import TemporaryBan as TemporaryBanEv

EVENT_TO_INT: dict[type, int] = {
    Device: 0,
    QREv: 1,
    PairStatusEv: 2,
    ConnectedEv: 3,
    KeepAliveTimeoutEv: 4,
    KeepAliveRestoredEv: 5,
    LoggedOutEv: 6,
    StreamReplacedEv: 7,
    TemporaryBanEv: 8,
    ConnectFailureEv: 9,
    ClientOutdatedEv: 10,
    StreamErrorEv: 11,
    DisconnectedEv: 12,
    MessageEv: 17,
    ReceiptEv: 18,
    ChatPresenceEv: 19,
    PresenceEv: 20,
    JoinedGroupEv: 21,
    GroupInfoEv: 22,
    HistorySyncEv: 13,
    PictureEv: 23,
    BlocklistEv: 30,
}
INT_TO_EVENT = {code: event for event, code in EVENT_TO_INT.items()}


class Event:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.list_func: dict[int, Callable[[Any, Any], None]] = {}
        self._qr: Callable[[Any, bytes], None] = lambda client, code: None

    def __call__(self, event: type) -> Callable[[Callable[[Any, Any], None]], None]:
        def register(function: Callable[[Any, Any], None]) -> None:
            self.list_func[EVENT_TO_INT[event]] = function

        return register

    def qr(self, function: Callable[[Any, bytes], None]) -> None:
        self._qr = function

    def execute(self, code: int, message: Any) -> None:
        """What neonize's ctypes callback does with an event from Go (events.py Event.execute);
        an exception in a handler is printed and swallowed by ctypes."""
        if code == 0:
            self.client.me = message
            return
        if code == 3:
            self.client.connected = True
        handler = self.list_func.get(code)
        if handler is not None:
            try:
                handler(self.client, message)
            except Exception as exc:  # noqa: BLE001 - "Exception ignored on calling ctypes callback"
                print(f"Exception ignored on calling ctypes callback function: {exc!r}", flush=True)
