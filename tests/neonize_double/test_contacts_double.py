"""Contacts and the profile on the neonize double, driven through its `NewClient` as a program
using neonize 0.5.2 would (each client in its own process, importing the double as `neonize`),
with FakeWhatsApp playing the servers and the other phones. What is checked is what
BEHAVIOURS.md ("Contacts and the profile") says whatsmeow, goneonize and neonize do: return
types, what each answer carries, what the store learns, and the error texts."""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.neonize_double.harness import DOUBLE, ROOT
from tests.neonize_double.test_groups_double import JPEG, CallFailed, Client, jid, lid, pn, text
from tests.neonize_double.whatsapp import FakeWhatsApp

A, B, C = "+4915100000001", "+4915100000002", "+4915100000003"
NOT_ON_WHATSAPP, BUSINESS, NO_PICTURE = "+4915100000000", "+4915100005555", "+4915100008888"
ABOUT = "Hey there! I am using WhatsApp."

# As test_groups_double's driver, with dotted methods (`contact.get_contact`), protobuf
# arguments ({"proto": name, "fields": {...}}) and message events forwarded.
DRIVER = r"""
import base64, json, sys, threading
from neonize.client import NewClient
from neonize.events import ConnectedEv, MessageEv
from neonize.proto import Neonize_pb2
from neonize.utils.jid import parse
from google.protobuf.message import Message

client = NewClient(sys.argv[1], uuid=sys.argv[2])
MARK = "@@ "
out = threading.Lock()

def say(message):
    with out:
        sys.stdout.write(MARK + json.dumps(message) + "\n")
        sys.stdout.flush()

def encode(value):
    if isinstance(value, Message):
        data = base64.b64encode(value.SerializeToString()).decode()
        return {"proto": type(value).__name__, "data": data}
    if isinstance(value, (list, tuple)) or type(value).__name__.startswith("Repeated"):
        return [encode(item) for item in value]
    return value

def decode(value):
    if isinstance(value, dict) and "jid" in value:
        return parse(value["jid"])
    if isinstance(value, dict) and "proto" in value:
        return getattr(Neonize_pb2, value["proto"])(**value["fields"])
    if isinstance(value, dict) and "bytes" in value:
        return base64.b64decode(value["bytes"])
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, dict):
        return {key: decode(item) for key, item in value.items()}
    return value

for code, kind in ((3, ConnectedEv), (17, MessageEv)):
    client.event(kind)(lambda c, event, code=code: say({"event": code, **encode(event)}))

for line in sys.stdin:
    call = json.loads(line)
    if call["method"] == "connect":
        threading.Thread(target=client.connect, daemon=True).start()
        say({"id": call["id"], "result": None})
        continue
    if call["method"] == "exit":
        import os
        client.stop()
        os._exit(0)
    try:
        target = client
        for name in call["method"].split("."):
            target = getattr(target, name)
        result = target(*decode(call["args"]), **decode(call["kwargs"]))
        say({"id": call["id"], "result": encode(result)})
    except Exception as exc:
        say({"id": call["id"], "error": type(exc).__name__, "message": str(exc)})
"""


class ContactClient(Client):
    """test_groups_double's Client, running the driver above."""

    def __init__(self, world: FakeWhatsApp, directory: Path, uuid: str) -> None:
        self.world, self.uuid = world, uuid
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join([str(DOUBLE), str(ROOT)]),
            "NEONIZE_DOUBLE_SOCKET": str(world.socket_path),
            "NEONIZE_DOUBLE_TIME_SCALE": "0.02",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(directory / f"{uuid}.sqlite3"), uuid],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.answers: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self.ids = iter(range(1, 1 << 30))
        threading.Thread(target=self._read, daemon=True).start()

    def dies_calling(self, method: str, *args: Any) -> tuple[int, str]:
        """Calls `method`, which must kill the process (a Go panic): its exit code and stderr."""
        assert self.process.stdin is not None and self.process.stderr is not None
        request = {"id": next(self.ids), "method": method, "args": list(args), "kwargs": {}}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        code = self.process.wait(timeout=20)
        return code, self.process.stderr.read()


@pytest.fixture
def world(tmp_path: Path):
    world = FakeWhatsApp(tmp_path / "whatsapp").start()
    yield world
    world.close()


@pytest.fixture
def clients(world: FakeWhatsApp, tmp_path: Path):
    made: list[ContactClient] = []

    def make(uuid: str, phone: str | None = None) -> ContactClient:
        client = ContactClient(world, tmp_path, uuid)
        made.append(client)
        return client.link(phone) if phone else client  # type: ignore[return-value]

    yield make
    for client in made:
        client.close()


def by_jid(answers: list[Any]) -> dict[str, Any]:
    return {text(answer.JID): answer.UserInfo for answer in answers}


def failure(call: Any) -> CallFailed:
    with pytest.raises(CallFailed) as failed:
        call()
    return failed.value


def until(predicate: Any, what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def test_user_info_answers_about_picture_devices_and_businesses_and_stores_the_lid(clients):
    a = clients("s1", A)
    assert text(a.call("get_lid_from_pn", jid(pn(C)))) == ""  # nothing known yet, no error
    assert text(a.call("get_pn_from_lid", jid(lid(C)))) == ""
    answers = a.call("get_user_info", jid(pn(C)), jid(pn(BUSINESS)), jid(pn(NOT_ON_WHATSAPP)))
    assert type(answers[0]).__name__ == "GetUserInfoSingleReturnFunction"
    users = by_jid(answers)
    assert set(users) == {pn(C), pn(BUSINESS), pn(NOT_ON_WHATSAPP)}

    contact = users[pn(C)]
    assert (contact.Status, contact.PictureID) == (ABOUT, "1600000003")
    assert [f"{d.User}:{d.Device}@{d.Server}" for d in contact.Devices] == [
        f"{C[1:]}:0@s.whatsapp.net"
    ]
    assert not contact.HasField("VerifiedName")
    business = users[pn(BUSINESS)]
    assert business.VerifiedName.Details.verifiedName == "Business 5555"
    assert business.VerifiedName.Certificate.details  # the details, signed, as WhatsApp sends
    absent = users[pn(NOT_ON_WHATSAPP)]
    assert (absent.Status, absent.PictureID, list(absent.Devices)) == ("", "", [])

    # whatsmeow stored the LIDs the servers named (the `lid` tag): the store resolves both ways.
    assert text(a.call("get_lid_from_pn", jid(pn(C)))) == lid(C)
    assert text(a.call("get_pn_from_lid", jid(lid(C)))) == pn(C)
    assert text(a.call("get_lid_from_pn", jid(pn(BUSINESS)))) == lid(BUSINESS)
    assert text(a.call("get_lid_from_pn", jid(pn(NOT_ON_WHATSAPP)))) == ""
    device = a.call("get_pn_from_lid", jid(lid(C).replace("@", ":3@")))
    assert (text(device), device.Device) == (pn(C), 3)  # the input's device is kept

    # A lookup teaches no push name: only messages do. A business's verified name is stored.
    unseen = a.call("contact.get_contact", jid(pn(C)))
    assert type(unseen).__name__ == "ContactInfo" and not unseen.Found
    for known in (pn(BUSINESS), lid(BUSINESS)):
        stored = a.call("contact.get_contact", jid(known))
        assert (stored.Found, stored.BusinessName, stored.PushName) == (True, "Business 5555", "")

    [by_lid] = a.call("get_user_info", jid(lid(C)))
    assert (text(by_lid.JID), by_lid.UserInfo.Status) == (lid(C), ABOUT)
    assert [d.Server for d in by_lid.UserInfo.Devices] == ["lid"]

    many = [jid(pn(f"+49151000000{n:02d}")) for n in range(11, 16)]
    orders = {tuple(text(u.JID) for u in a.call("get_user_info", *many)) for _ in range(12)}
    assert len(orders) > 1  # goneonize ranges over a Go map: the order is random

    wrong = failure(lambda: a.call("get_user_info", jid("120363000000000001@g.us")))
    assert (wrong.kind, wrong.message) == ("GetUserInfoError", "unknown user server 'g.us'")
    non_pn = failure(lambda: a.call("get_lid_from_pn", jid(lid(C))))
    assert (non_pn.kind, non_pn.message) == (
        "GetJIDFromStoreError",
        f"invalid GetLIDForPN call with non-PN JID {lid(C)}",
    )


def test_linked_accounts_are_users_with_their_own_profile(clients, world):
    a = clients("s1", A)
    b = clients("s2", B)
    [answer] = a.call("get_user_info", jid(pn(B)))
    info = answer.UserInfo
    assert (info.Status, info.PictureID) == (ABOUT, "")  # a new account: no picture
    assert [d.Device for d in info.Devices] == [0, 1]  # the phone and the linked session
    assert text(a.call("get_lid_from_pn", jid(pn(B)))) == world.devices["s2"].lid
    none = failure(lambda: a.call("get_profile_picture", jid(pn(B))))
    assert none.kind == "GetProfilePictureError"

    b.call("set_status_message", "Busy")
    picture = b.call("set_profile_photo", {"bytes": base64.b64encode(JPEG).decode()})
    [answer] = a.call("get_user_info", jid(pn(B)))
    assert (answer.UserInfo.Status, answer.UserInfo.PictureID) == ("Busy", picture)
    assert a.call("get_profile_picture", jid(pn(B))).ID == picture
    assert world.profile("s2") == {"push_name": f"Phone {B[1:]}", "about": "Busy",
                                   "picture_id": picture}  # fmt: skip


def test_profile_pictures_come_from_the_cdn_and_some_contacts_have_none(clients, world):
    a = clients("s1", A)
    picture = a.call("get_profile_picture", jid(pn(C)))
    assert type(picture).__name__ == "ProfilePictureInfo"
    assert (picture.ID, picture.Type) == ("1600000003", "image")
    assert picture.DirectPath.startswith("/v/t61.24694-24/1600000003_")
    assert picture.URL == "https://pps.whatsapp.net" + picture.DirectPath
    preview = a.call(
        "get_profile_picture",
        jid(pn(C)),
        extra={"proto": "GetProfilePictureParams", "fields": {"Preview": True}},
    )
    assert (preview.ID, preview.Type) == ("1600000003", "preview") and preview.URL != picture.URL
    same = a.call(
        "get_profile_picture",
        jid(lid(C)),
        {"proto": "GetProfilePictureParams", "fields": {"ExistingID": "1600000003"}},
    )
    assert (same.URL, same.ID) == ("", "")  # unchanged: whatsmeow's nil, an empty message

    for without in (NO_PICTURE, NOT_ON_WHATSAPP):
        none = failure(lambda without=without: a.call("get_profile_picture", jid(pn(without))))
        # neonize raises with the whole GetProfilePictureReturnFunction: its text format.
        assert (none.kind, none.message) == (
            "GetProfilePictureError",
            'Error: "that user or group does not have a profile picture"\n',
        )
    group = text(a.call("create_group", "Pictured").JID)
    assert failure(lambda: a.call("get_profile_picture", jid(group))).kind == (
        "GetProfilePictureError"
    )
    photo = a.call("set_group_photo", jid(group), {"bytes": base64.b64encode(JPEG).decode()})
    assert a.call("get_profile_picture", jid(group)).ID == photo


def test_the_contact_store_learns_push_names_from_messages(clients, world):
    a = clients("s1", A)
    clients("s2", B)
    assert not a.call("contact.get_contact", jid(pn(C))).Found
    world.message_from("s1", C, "hello")
    message = a.event(17)
    assert message.Info.Pushname == "Contact 0003"
    for known in (pn(C), lid(C)):  # the sender's JID and its alt, both rows
        stored = a.call("contact.get_contact", jid(known))
        assert (stored.Found, stored.PushName, stored.FullName) == (True, "Contact 0003", "")
    assert text(a.call("get_pn_from_lid", jid(lid(C)))) == pn(C)  # from SenderAlt

    world.message_from("s1", C, "renamed", push_name="Carla")
    a.event(17)
    assert a.call("contact.get_contact", jid(lid(C))).PushName == "Carla"
    world.message_from("s1", "+4915100000004", "anonymous", push_name="-")  # "-" is no name
    a.event(17)
    assert not a.call("contact.get_contact", jid(pn("+4915100000004"))).Found
    world.message_from("s1", B, "from a linked account")  # its push name is the account's
    a.event(17)
    assert a.call("contact.get_contact", jid(pn(B))).PushName == f"Phone {B[1:]}"
    a.call("get_user_info", jid(pn("+4915100000006")))  # a lookup: still no push name
    assert not a.call("contact.get_contact", jid(pn("+4915100000006"))).Found


def test_push_name_about_and_photo_are_set_and_read_back(clients, world, tmp_path):
    a = clients("s1", A)
    other = clients("s3", A)  # a second linked device of the same account
    assert a.call("get_me").PushName == f"Phone {A[1:]}"
    assert a.call("set_profile_name", "Acme") is None
    assert a.call("get_me").PushName == "Acme"  # the patch is fetched back before returning
    assert world.profile("s1")["push_name"] == "Acme"
    until(lambda: other.call("get_me").PushName == "Acme", "the other device's app state")

    assert a.call("set_status_message", "Open 9 to 5") is None
    assert world.profile("s1")["about"] == "Open 9 to 5"
    [own] = a.call("get_user_info", jid(pn(A)))
    assert own.UserInfo.Status == "Open 9 to 5"
    assert [d.Device for d in own.UserInfo.Devices] == [0, 1, 2]
    with pytest.raises(CallFailed):
        a.call("get_profile_picture", jid(pn(A)))  # no picture yet

    png = failure(
        lambda: a.call("set_profile_photo", {"bytes": base64.b64encode(b"\x89PNG\r\n").decode()})
    )
    assert (png.kind, png.message) == ("SetGroupPhotoError", "the given data is not a valid image")
    picture = a.call("set_profile_photo", {"bytes": base64.b64encode(JPEG).decode()})
    assert picture.isdigit() and world.profile("s1")["picture_id"] == picture
    mine = a.call("get_profile_picture", jid(pn(A)))
    assert (mine.ID, mine.Type) == (picture, "image") and mine.URL.startswith("https://pps.")
    (tmp_path / "me.jpg").write_bytes(JPEG)
    again = a.call("set_profile_photo", str(tmp_path / "me.jpg"))
    assert again != picture and other.call("get_profile_picture", jid(pn(A))).ID == again


def test_calls_without_a_client_or_a_connection_fail_as_whatsmeow_does(clients, world):
    fresh = clients("s1")  # before connect(): no Go client
    for call, args, kind, message in (
        ("get_user_info", [jid(pn(C))], "GetUserInfoError", "client is nil"),
        ("get_profile_picture", [jid(pn(C))], "GetProfilePictureError", 'Error: "client is nil"\n'),
        ("set_profile_name", ["x"], "SendAppStateError", "client not found"),
        ("set_profile_photo", [{"bytes": "/9j/"}], "SetGroupPhotoError", "client is nil"),
    ):
        failed = failure(lambda call=call, args=args: fresh.call(call, *args))
        assert (failed.kind, failed.message) == (kind, message)

    a = clients("s2", A)
    a.call("disconnect")
    for call, args, kind, message in (
        ("get_user_info", [jid(pn(C))], "GetUserInfoError",
         "failed to send usync query: websocket not connected"),
        ("get_profile_picture", [jid(pn(C))], "GetProfilePictureError",
         'Error: "websocket not connected"\n'),
        ("set_profile_name", ["x"], "SendAppStateError", "websocket not connected"),
        ("set_status_message", ["x"], "SetStatusMessageError", "websocket not connected"),
        ("set_profile_photo", [{"bytes": "/9j/"}], "SetGroupPhotoError",
         "websocket not connected"),
    ):  # fmt: skip
        failed = failure(lambda call=call, args=args: a.call(call, *args))
        assert (failed.kind, failed.message) == (kind, message)
    assert a.call("get_me").PushName == f"Phone {A[1:]}"  # nothing changed
    assert not a.call("contact.get_contact", jid(pn(C))).Found  # the store needs no socket

    b = clients("s3", B)
    b.call("logout")  # Store.Delete: the session stores fail with ErrDeviceDeleted
    for call, args, kind in (
        ("contact.get_contact", [jid(pn(C))], "ContactStoreError"),
        ("set_profile_name", ["x"], "SendAppStateError"),
    ):
        failed = failure(lambda call=call, args=args: b.call(call, *args))
        assert (failed.kind, failed.message) == (kind, "invalid use of deleted device")


@pytest.mark.parametrize(
    "method, args",
    [
        ("set_status_message", ["x"]),  # sendMexIQ reads cli.Store before any nil check
        ("contact.get_contact", [jid(pn(C))]),
        ("get_lid_from_pn", [jid(pn(C))]),
    ],
)
def test_store_and_mex_calls_without_a_client_abort_the_process(clients, method, args):
    code, stderr = clients("s1").dies_calling(method, *args)
    assert code == -6  # SIGABRT
    assert "nil pointer dereference" in stderr
