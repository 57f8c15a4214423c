"""Groups on the neonize double, driven through its `NewClient` as a program using neonize 0.5.2
would (each client in its own process, importing the double as `neonize`), with FakeWhatsApp
playing the servers and the other phones. What is checked is what BEHAVIOURS.md ("Groups")
says whatsmeow, goneonize and neonize do: return types, error texts, events and their fields."""

from __future__ import annotations

from typing import Any

import pytest

from tests.neonize_double.driver import JPEG, NOT_ON_WHATSAPP, A, B, C, blob, jid, lid, pn, text

INVITE_ONLY = "+4915100009999"


def roles(info: Any) -> dict[str, str]:
    """Participants of a GroupInfo by JID: superadmin, admin or member (or "error <code>")."""
    return {
        text(p.JID): f"error {p.Error}"
        if p.Error
        else "superadmin"
        if p.IsSuperAdmin
        else "admin"
        if p.IsAdmin
        else "member"
        for p in info.Participants
    }


def test_creating_a_group_answers_per_participant_and_every_member_device_joins(clients, world):
    a = clients("s1", A)
    b = clients("s2", B)
    info = a.call(
        "create_group", "Team", [jid(pn(B)), jid(pn(NOT_ON_WHATSAPP)), jid(pn(INVITE_ONLY))]
    )
    group = text(info.JID)
    assert group.endswith("@g.us") and group.startswith("120363")
    assert info.GroupName.Name == "Team" and text(info.GroupName.NameSetBy) == lid(A)
    assert (text(info.OwnerJID), text(info.OwnerPN)) == (lid(A), pn(A))
    assert info.GroupCreated > 0 and info.GroupTopic.TopicSetAt == -62135596800
    assert roles(info) == {
        lid(A): "superadmin",
        lid(B): "member",
        pn(NOT_ON_WHATSAPP): "error 404",
        lid(INVITE_ONLY): "error 403",
    }
    [invite_only] = [p for p in info.Participants if p.Error == 403]
    assert text(invite_only.PhoneNumber) == pn(INVITE_ONLY) and text(invite_only.LID) == lid(
        INVITE_ONLY
    )
    assert (
        len(invite_only.AddRequest.Code) == 16
        and invite_only.AddRequest.Expiration > info.GroupCreated
    )
    member = next(p for p in info.Participants if text(p.JID) == lid(B))
    assert (text(member.LID), text(member.PhoneNumber)) == (lid(B), pn(B))

    for device in (a, b):  # the creator's own device too
        joined = device.event(21)
        assert (joined.Type, joined.Reason) == ("new", "")
        assert joined.CreateKey.startswith("3EB0") and len(joined.CreateKey) == 22
        assert (text(joined.Sender), text(joined.SenderPN)) == (lid(A), pn(A))
        assert text(joined.GroupInfo.JID) == group
        assert roles(joined.GroupInfo) == {lid(A): "superadmin", lid(B): "member"}
    assert world.group(group)["participants"] == {A[1:]: "superadmin", B[1:]: "member"}
    # The create notification carried B's LID and number: whatsmeow stored the mapping.
    assert text(a.call("get_pn_from_lid", jid(lid(B)))) == pn(B)


def test_group_info_and_the_joined_groups_are_the_servers_and_store_the_lid_mappings(
    clients, world
):
    a = clients("s1", A)
    group = world.group_event("s1", "", "join", by=B, value="Phones")
    joined = a.event(21)
    assert (joined.Type, text(joined.Sender), joined.GroupInfo.GroupName.Name) == (
        "new",
        lid(B),
        "Phones",
    )
    world.group_event("s1", group, "add", participant=C, by=B)
    change = a.event(22)
    assert [text(j) for j in change.Join] == [lid(C)] and text(change.Sender) == lid(B)
    assert change.ParticipantVersionID and change.PrevParticipantsVersionID

    info = a.call("get_group_info", jid(group))
    assert roles(info) == {lid(B): "superadmin", lid(A): "member", lid(C): "member"}
    [listed] = a.call("get_joined_groups")
    assert text(listed.JID) == group and len(listed.Participants) == 3
    assert text(a.call("get_pn_from_lid", jid(lid(C)))) == pn(C)  # from the participant list
    assert world.group_queries == {"s1": 2}

    missing = a.fails("get_group_info", jid("120363999999999999@g.us"))
    assert (missing.kind, missing.message) == (
        "GetGroupInfoError",
        "that group does not exist",
    )
    world.group_event("s1", group, "remove", participant=A, by=B)
    left = a.event(22)
    assert [text(j) for j in left.Leave] == [lid(A)] and text(left.Sender) == lid(B)
    outside = a.fails("get_group_info", jid(group))
    assert outside.message == "you're not participating in that group"
    assert a.call("get_joined_groups") == []
    world.group_event("s1", group, "subject", by=B, value="Without A")
    a.no_event()  # no more events of a group it left
    world.group_event("s1", group, "join", by=B)  # B adds the session's account back
    added = a.event(21)
    assert (added.Type, added.Reason, added.CreateKey) == ("", "", "")
    assert (text(added.Sender), text(added.SenderPN)) == (lid(B), pn(B))
    assert added.GroupInfo.GroupName.Name == "Without A"


def test_group_metadata_queries_past_the_rate_limit_answer_rate_overlimit(clients, world):
    a = clients("s1", A)
    group = world.group_event("s1", "", "join", by=B)
    world.group_rate_limit = 2
    a.call("get_group_info", jid(group))
    a.call("get_joined_groups")
    limited = a.fails("get_group_info", jid(group))
    assert (limited.kind, limited.message) == (
        "GetGroupInfoError",
        "info query returned status 429: rate-overlimit",
    )
    listed = a.fails("get_joined_groups")
    assert listed.kind == "GetJoinedGroupsError" and "429: rate-overlimit" in listed.message
    assert world.group_queries["s1"] == 4
    world.group_rate_window = 0.0  # the window passed
    assert text(a.call("get_group_info", jid(group)).JID) == group


def test_settings_follow_whatsapps_rules_and_reach_every_member(clients, world):
    a = clients("s1", A)
    b = clients("s2", B)
    info = a.call("create_group", "Rules", [jid(pn(B))])
    group = jid(text(info.JID))
    a.event(21), b.event(21)

    b.call("set_group_name", group, "Renamed by B")  # not locked: anyone edits the info
    for device in (a, b):
        renamed = device.event(22)
        assert renamed.Name.Name == "Renamed by B" and text(renamed.Name.NameSetBy) == lid(B)
        assert text(renamed.Sender) == lid(B) and not renamed.HasField("Topic")
    a.call("set_group_locked", group, True)
    assert a.event(22).Locked.isLocked and b.event(22).Locked.isLocked
    for call, args, kind in (
        ("set_group_name", ("x",), "SetGroupNameError"),
        ("set_group_topic", ("", "", "x"), "SetGroupTopicError"),
        ("set_group_announce", (True,), "SetGroupAnnounceError"),
        ("set_group_locked", (False,), "SetGroupLockedError"),
        (
            "update_group_participants",
            ([jid(pn(A))], {"change": "REMOVE"}),
            "UpdateGroupParticipantsError",
        ),
    ):
        refused = b.fails(call, group, *args)
        assert (refused.kind, refused.message) == (
            kind,
            "info query returned status 403: forbidden",
        )
    a.call("set_group_announce", group, True)
    announce = b.event(22).Announce
    assert announce.IsAnnounce and announce.AnnounceVersionID
    a.event(22)

    queries = world.group_queries.get("s1", 0)
    a.call("set_group_topic", group, "", "", "About us")  # asks for the previous topic id first
    assert world.group_queries["s1"] == queries + 1
    topic = b.event(22).Topic
    assert (topic.Topic, text(topic.TopicSetBy), topic.TopicDeleted) == ("About us", lid(A), False)
    assert topic.TopicID.startswith("3EB0")
    a.event(22)
    a.call("set_group_topic", group, topic.TopicID, "", "")
    assert b.event(22).Topic.TopicDeleted
    state = world.group(group["jid"])
    assert (state["subject"], state["locked"], state["announce"], state["description"]) == (
        "Renamed by B",
        True,
        True,
        "",
    )


def test_participant_changes_answer_per_participant(clients, world):
    a = clients("s1", A)
    info = a.call("create_group", "Changes", [jid(pn(B))])
    group = jid(text(info.JID))
    a.event(21)
    answers = a.call(
        "update_group_participants",
        group,
        [jid(pn(B)), jid(pn(C)), jid(pn(NOT_ON_WHATSAPP)), jid(pn(INVITE_ONLY))],
        {"change": "ADD"},
    )
    assert [(text(p.JID), p.Error) for p in answers] == [
        (lid(B), 409),
        (lid(C), 0),
        (pn(NOT_ON_WHATSAPP), 404),
        (lid(INVITE_ONLY), 403),
    ]
    assert answers[3].AddRequest.Code and not answers[1].HasField("AddRequest")
    added = a.event(22)
    assert [text(j) for j in added.Join] == [lid(C)] and added.JoinReason == ""
    [promoted] = a.call("update_group_participants", group, [jid(lid(C))], {"change": "PROMOTE"})
    assert promoted.Error == 0 and [text(j) for j in a.event(22).Promote] == [lid(C)]
    [demoted] = a.call("update_group_participants", group, [jid(pn(C))], {"change": "DEMOTE"})
    assert demoted.Error == 0 and [text(j) for j in a.event(22).Demote] == [lid(C)]
    removed = a.call(
        "update_group_participants",
        group,
        [jid(pn(C)), jid(pn("+4915100000004"))],
        {"change": "REMOVE"},
    )
    assert [p.Error for p in removed] == [0, 404]
    assert [text(j) for j in a.event(22).Leave] == [lid(C)]
    assert world.group(group["jid"])["participants"] == {A[1:]: "superadmin", B[1:]: "member"}


def test_invite_links_join_revoke_and_refuse(clients, world):
    a = clients("s1", A)
    b = clients("s2", B)
    info = a.call("create_group", "Linked")
    group = text(info.JID)
    a.event(21)
    link = a.call("get_group_invite_link", jid(group))
    assert link == "https://chat.whatsapp.com/" + world.group(group)["invite_code"]
    assert text(b.call("join_group_with_link", link + "?utm=x")) == group
    joined = b.event(21)
    assert (joined.Reason, joined.Type, text(joined.Sender)) == ("invite", "", lid(B))
    assert roles(joined.GroupInfo) == {lid(A): "superadmin", lid(B): "member"}
    change = a.event(22)
    assert [text(j) for j in change.Join] == [lid(B)] and change.JoinReason == "invite"

    member = b.fails("get_group_invite_link", jid(group))
    assert (member.kind, member.message) == (
        "GetGroupInviteLinkError",
        "you don't have the permission to get the group's invite link",
    )
    again = b.fails("join_group_with_link", link)
    assert again.message == "info query returned status 409: conflict"
    new = a.call("get_group_invite_link", jid(group), revoke=True)
    assert new != link and new.startswith("https://chat.whatsapp.com/")
    b.call("leave_group", jid(group))
    assert [text(j) for j in b.event(22).Leave] == [lid(B)]
    assert [text(j) for j in a.event(22).Leave] == [lid(B)]
    for code, message in (
        (link, "that group invite link has been revoked"),
        ("NotACode", "that group invite link is not valid"),
    ):
        refused = b.fails("join_group_with_link", code)
        assert (refused.kind, refused.message) == ("InviteLinkError", message)
    assert text(b.call("join_group_with_link", new.rsplit("/", 1)[1])) == group


def test_group_photos_must_be_jpegs(clients, world, tmp_path):
    a = clients("s1", A)
    chosen = world.group_event("s1", "120363000000000001@g.us", "join", by=B)
    group = jid(text(a.call("create_group", "Photo").JID))
    assert group["jid"] != chosen and world.group(chosen)["participants"][A[1:]] == "member"
    png = a.fails("set_group_photo", group, blob(b"\x89PNG\r\n"))
    assert (png.kind, png.message) == (
        "SetGroupPhotoError",
        "the given data is not a valid image",
    )
    picture = a.call("set_group_photo", group, blob(JPEG))
    assert picture.isdigit() and world.group(group["jid"])["picture_id"] == picture
    (tmp_path / "photo.jpg").write_bytes(JPEG)
    assert a.call("set_group_photo", group, str(tmp_path / "photo.jpg")) != picture


def test_the_phones_changes_reach_the_session_and_offline_devices_get_them_later(clients, world):
    a = clients("s1", A)
    group = world.group_event("s1", "120363000000000077@g.us", "join", by=B, value="Family")
    assert group == "120363000000000077@g.us"
    assert a.event(21).GroupInfo.GroupName.Name == "Family"
    with pytest.raises(PermissionError):
        world.group_event("s1", group, "subject", by=C, value="not a member")
    world.group_event("s1", group, "add", participant=C, by=B)
    with pytest.raises(PermissionError):  # a phone's group: only admins add
        world.group_event("s1", group, "add", participant="+4915100000005", by=C)
    world.group_event("s1", group, "promote", participant=A, by=B)
    world.group_event("s1", group, "description", by=C, value="Hello")
    world.group_event("s1", group, "announce", by=B, value="true")
    assert [text(j) for j in a.event(22).Join] == [lid(C)]
    assert [text(j) for j in a.event(22).Promote] == [lid(A)]
    topic = a.event(22)
    assert topic.Topic.Topic == "Hello" and text(topic.Sender) == lid(C)
    assert a.event(22).Announce.IsAnnounce
    assert world.group(group)["participants"] == {
        B[1:]: "superadmin",
        A[1:]: "admin",
        C[1:]: "member",
    }

    a.call("stop")
    world.wait(lambda: not world.connected("s1"))
    world.group_event("s1", group, "leave", participant=C)
    world.group_event("s1", group, "subject", by=B, value="Family 2")
    a.call("connect")
    assert [text(j) for j in a.event(22).Leave] == [lid(C)]
    assert a.event(22).Name.Name == "Family 2"


def test_group_calls_without_a_client_or_a_connection_fail_as_whatsmeow_does(clients, world):
    a = clients("s1")
    nil = a.fails("get_joined_groups")
    assert (nil.kind, nil.message) == ("GetJoinedGroupsError", "client is nil")
    tokens = a.fails("create_group", "Early", [jid(pn(B))])
    assert tokens.message == (
        f"failed to get privacy token for participant {pn(B)}: "
        "the store doesn't contain a device JID"
    )
    topic = a.fails("set_group_topic", jid("120363000000000001@g.us"), "", "", "x")
    assert topic.message == "failed to get old group info to update topic: client is nil"
    a.link(A)
    a.call("disconnect")
    offline = a.fails("leave_group", jid("120363000000000001@g.us"))
    assert (offline.kind, offline.message) == (
        "LeaveGroupError",
        "websocket not connected",
    )
