"""Contacts and the profile on the neonize double, driven through its `NewClient` as a program
using neonize 0.5.2 would (each client in its own process, importing the double as `neonize`),
with FakeWhatsApp playing the servers and the other phones. What is checked is what
BEHAVIOURS.md ("Contacts and the profile") says whatsmeow, goneonize and neonize do: return
types, what each answer carries, what the store learns, and the error texts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.neonize_double.driver import JPEG, NOT_ON_WHATSAPP, A, B, C, blob, jid, lid, pb, pn, text
from tests.processes import wait_until

BUSINESS, NO_PICTURE = "+4915100005555", "+4915100008888"
ABOUT = "Hey there! I am using WhatsApp."


def by_jid(answers: list[Any]) -> dict[str, Any]:
    return {text(answer.JID): answer.UserInfo for answer in answers}


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

    wrong = a.fails("get_user_info", jid("120363000000000001@g.us"))
    assert (wrong.kind, wrong.message) == ("GetUserInfoError", "unknown user server 'g.us'")
    non_pn = a.fails("get_lid_from_pn", jid(lid(C)))
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
    none = a.fails("get_profile_picture", jid(pn(B)))
    assert none.kind == "GetProfilePictureError"

    b.call("set_status_message", "Busy")
    picture = b.call("set_profile_photo", blob(JPEG))
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
        extra=pb("GetProfilePictureParams", Preview=True),
    )
    assert (preview.ID, preview.Type) == ("1600000003", "preview") and preview.URL != picture.URL
    same = a.call(
        "get_profile_picture",
        jid(lid(C)),
        pb("GetProfilePictureParams", ExistingID="1600000003"),
    )
    assert (same.URL, same.ID) == ("", "")  # unchanged: whatsmeow's nil, an empty message

    for without in (NO_PICTURE, NOT_ON_WHATSAPP):
        none = a.fails("get_profile_picture", jid(pn(without)))
        # neonize raises with the whole GetProfilePictureReturnFunction: its text format.
        assert (none.kind, none.message) == (
            "GetProfilePictureError",
            'Error: "that user or group does not have a profile picture"\n',
        )
    group = text(a.call("create_group", "Pictured").JID)
    assert a.fails("get_profile_picture", jid(group)).kind == "GetProfilePictureError"
    photo = a.call("set_group_photo", jid(group), blob(JPEG))
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
    wait_until(lambda: other.call("get_me").PushName == "Acme", 10, "the other device's app state")

    assert a.call("set_status_message", "Open 9 to 5") is None
    assert world.profile("s1")["about"] == "Open 9 to 5"
    [own] = a.call("get_user_info", jid(pn(A)))
    assert own.UserInfo.Status == "Open 9 to 5"
    assert [d.Device for d in own.UserInfo.Devices] == [0, 1, 2]
    a.fails("get_profile_picture", jid(pn(A)))  # no picture yet

    png = a.fails("set_profile_photo", blob(b"\x89PNG\r\n"))
    assert (png.kind, png.message) == ("SetGroupPhotoError", "the given data is not a valid image")
    picture = a.call("set_profile_photo", blob(JPEG))
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
        ("set_profile_photo", [blob(b"\xff\xd8\xff")], "SetGroupPhotoError", "client is nil"),
    ):
        failed = fresh.fails(call, *args)
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
        ("set_profile_photo", [blob(b"\xff\xd8\xff")], "SetGroupPhotoError",
         "websocket not connected"),
    ):  # fmt: skip
        failed = a.fails(call, *args)
        assert (failed.kind, failed.message) == (kind, message)
    assert a.call("get_me").PushName == f"Phone {A[1:]}"  # nothing changed
    assert not a.call("contact.get_contact", jid(pn(C))).Found  # the store needs no socket

    b = clients("s3", B)
    b.call("logout")  # Store.Delete: the session stores fail with ErrDeviceDeleted
    for call, args, kind in (
        ("contact.get_contact", [jid(pn(C))], "ContactStoreError"),
        ("set_profile_name", ["x"], "SendAppStateError"),
    ):
        failed = b.fails(call, *args)
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
