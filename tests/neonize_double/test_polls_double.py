"""Polls on the neonize double, driven through its `NewClient` as a program using neonize 0.5.2
would (each client in its own process), with FakeWhatsApp playing the servers and the contacts'
phones. What is checked is what BEHAVIOURS.md ("Polls") says whatsmeow, goneonize and neonize do:
the poll message, where its secret is kept, how a contact's vote is encrypted and decrypted, and
the error texts."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.neonize_double import msgsecret
from tests.neonize_double.driver import A, B, C, again, jid, lid, member, pn, text

OPTIONS = ["Pizza", "Sushi", "Salad"]


def digest(*names: str) -> list[bytes]:
    return [hashlib.sha256(name.encode()).digest() for name in names]


def secrets_of(store: Path) -> list[tuple]:
    """The rows of whatsmeow_message_secrets in a client's store file."""
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT our_jid, chat_jid, sender_jid, message_id, key FROM whatsmeow_message_secrets"
        ).fetchall()


def send_poll(client, to: str, kind: str = "SINGLE", options: list[str] = OPTIONS):
    poll = client.call("build_poll_vote_creation", "Lunch?", options, member("VoteType", kind))
    return poll, client.call("send_message", jid(to), again(poll))


def test_msgsecret_is_whatsmeows_key_derivation_and_gcm():
    key, additional = msgsecret.secret_key(
        "Poll Vote", "2:7@s.whatsapp.net", "3EB0AA", "1.1:3@s.whatsapp.net", b"\x01" * 32
    )
    assert additional == b"3EB0AA\x002@s.whatsapp.net"  # the non-AD modification sender
    assert (
        key
        == msgsecret.secret_key(
            "Poll Vote", "2@s.whatsapp.net", "3EB0AA", "1@s.whatsapp.net", b"\x01" * 32
        )[0]
    )
    assert len(key) == 32
    assert msgsecret.secret_key("Enc Reaction", "2@lid", "X", "1@lid", b"s")[1] == b""
    sealed = msgsecret.encrypt(key, b"i" * 12, b"vote", additional)
    assert len(sealed) == len(b"vote") + 16
    assert msgsecret.decrypt(key, b"i" * 12, sealed, additional) == b"vote"
    with pytest.raises(msgsecret.AuthenticationFailed, match="message authentication failed"):
        msgsecret.decrypt(key, b"i" * 12, sealed, b"other")
    with pytest.raises(msgsecret.NonceLengthPanic):
        msgsecret.decrypt(key, b"i" * 8, sealed, additional)
    assert msgsecret.hash_options(["Pizza"]) == digest("Pizza")


def test_a_poll_goes_out_with_its_secret_which_the_store_and_the_send_response_keep(
    clients, world, tmp_path
):
    unconnected = clients("s9")  # BuildPollCreation reads no client: it works without one
    offline = unconnected.call("build_poll_vote_creation", "Q", ["x"], member("VoteType", "SINGLE"))
    assert offline.pollCreationMessage.selectableOptionsCount == 1
    a = clients("s1", A)
    poll, response = send_poll(a, pn(B))
    creation = poll.pollCreationMessage
    assert not poll.HasField("pollCreationMessageV3")
    assert (creation.name, [o.optionName for o in creation.options]) == ("Lunch?", OPTIONS)
    assert creation.selectableOptionsCount == 1  # VoteType.SINGLE
    secret = poll.messageContextInfo.messageSecret
    assert len(secret) == 32
    assert response.Message == poll  # PY L692: the Message as sent
    assert response.Message.messageContextInfo.messageSecret == secret
    [sent] = world.sent["s1"]
    assert sent["id"] == response.ID and sent["to"] == pn(B)
    # send.go: the message went to B's LID, from our LID, and that is where the secret is kept.
    own_lid = world.devices["s1"].lid
    assert secrets_of(tmp_path / "s1.sqlite3") == [(pn(A), lid(B), own_lid, response.ID, secret)]
    assert text(a.call("get_pn_from_lid", jid(lid(B)))) == pn(B)  # the LID send.go looked up

    many = a.call("build_poll_vote_creation", "Q", ["x", "y"], member("VoteType", "MULTIPLE"))
    assert many.pollCreationMessage.selectableOptionsCount == 0  # any number
    assert many.messageContextInfo.messageSecret != secret
    single_of_none = a.call("build_poll_vote_creation", "Q", [], member("VoteType", "SINGLE"))
    assert single_of_none.pollCreationMessage.selectableOptionsCount == 0  # above the options

    group = world.group_event("s1", "", "join", by=B)
    a.event(21)
    _, in_group = send_poll(a, group, "MULTIPLE")
    # any message with a secret: neonize's add_msg_secret adds one (PY L684)
    plain = a.call("send_message", jid(pn(C)), "hello", add_msg_secret=True)
    plain_secret = plain.Message.messageContextInfo.messageSecret
    assert plain.Message.conversation == "hello" and len(plain_secret) == 32
    rows = {row[3]: row for row in secrets_of(tmp_path / "s1.sqlite3")}
    assert rows[in_group.ID][1:3] == (group, own_lid)  # a LID-addressed group: from our LID
    assert rows[plain.ID][1:] == (lid(C), own_lid, plain.ID, plain_secret)
    assert (
        a.call("send_message", jid(pn(C)), "no secret").Message.HasField("messageContextInfo")
        is False
    )
    assert len(secrets_of(tmp_path / "s1.sqlite3")) == 3


def test_a_contacts_vote_decrypts_to_the_hashes_of_the_options_in_a_chat_and_a_group(
    clients, world
):
    a = clients("s1", A)
    _, poll = send_poll(a, pn(B))
    vote_id = world.poll_vote("s1", B, poll.ID, ["Sushi"])
    vote = a.event(17)
    assert vote.Info.ID == vote_id and vote.Info.Type == "poll"
    assert text(vote.Info.MessageSource.Sender) == pn(B) and not vote.Info.MessageSource.IsGroup
    update = vote.Message.pollUpdateMessage
    key = update.pollCreationMessageKey
    assert (key.remoteJID, key.fromMe, key.ID, key.participant) == (pn(A), False, poll.ID, "")
    assert len(update.vote.encIV) == 12 and update.senderTimestampMS > 0
    assert list(a.call("decrypt_poll_vote", again(vote)).selectedOptions) == digest("Sushi")

    world.poll_vote("s1", B, poll.ID, [])  # the vote withdrawn: an empty selection, encrypted
    withdrawn = a.event(17)
    assert withdrawn.Message.pollUpdateMessage.vote.encPayload  # the GCM tag at least
    assert list(a.call("decrypt_poll_vote", again(withdrawn)).selectedOptions) == []

    # The phone sends what it is given: a name that is no option is a hash that matches none.
    world.poll_vote("s1", B, poll.ID, ["Pasta", "Sushi"])
    odd = a.call("decrypt_poll_vote", again(a.event(17))).selectedOptions
    assert list(odd) == digest("Pasta", "Sushi")
    with pytest.raises(ValueError, match="sent no message"):
        world.poll_vote("s1", B, "3EB0000000000000000000", ["Sushi"])

    group = world.group_event("s1", "", "join", by=B)
    a.event(21)
    world.group_event("s1", group, "add", participant=C, by=B)
    a.event(22)
    _, group_poll = send_poll(a, group, "MULTIPLE")
    world.poll_vote("s1", C, group_poll.ID, ["Salad", "Pizza"])
    group_vote = a.event(17)
    source = group_vote.Info.MessageSource
    assert (text(source.Chat), text(source.Sender), source.IsGroup) == (group, pn(C), True)
    key = group_vote.Message.pollUpdateMessage.pollCreationMessageKey
    assert (key.remoteJID, key.participant, key.fromMe) == (group, pn(A), False)
    chosen = a.call("decrypt_poll_vote", again(group_vote)).selectedOptions
    assert list(chosen) == digest("Salad", "Pizza")


def test_a_tampered_vote_and_a_vote_whose_secret_the_store_lacks_fail_as_whatsmeow_says(
    clients, world
):
    a = clients("s1", A)
    _, poll = send_poll(a, pn(B))
    world.poll_vote("s1", B, poll.ID, ["Pizza"], tamper=True)
    tampered = a.event(17)
    failed = a.fails("decrypt_poll_vote", again(tampered))
    own_lid = world.devices["s1"].lid
    assert (failed.kind, failed.message) == (
        "DecryptPollVoteError",
        "failed to decrypt poll vote: failed to decrypt secret message: cipher: message "
        f"authentication failed (sender: {pn(B)}, orig sender: {pn(A)} and {own_lid})",
    )

    # The account's second device has its own store, without the poll's secret.
    world.poll_vote("s1", B, poll.ID, ["Pizza"])
    vote = a.event(17)
    second = clients("s2", A)
    missing = second.fails("decrypt_poll_vote", again(vote))
    assert (missing.kind, missing.message) == (
        "DecryptPollVoteError",
        "failed to decrypt poll vote: original message secret key not found",
    )
    assert list(a.call("decrypt_poll_vote", again(vote)).selectedOptions) == digest("Pizza")

    world.message_from("s1", B, "not a vote")
    not_a_vote = a.fails("decrypt_poll_vote", again(a.event(17)))
    assert not_a_vote.message == "given message isn't a poll update message"
    never_connected = clients("s3")
    assert never_connected.fails("decrypt_poll_vote", again(vote)).message == (
        "failed to decrypt poll vote: client is nil"
    )


def test_the_secret_survives_a_restart_from_the_same_store(clients, world):
    a = clients("s1", A)
    _, poll = send_poll(a, pn(B), "MULTIPLE")
    a.close()
    again_a = clients("s1")  # the same store file, a new process
    again_a.call("connect")
    again_a.event(3)
    world.poll_vote("s1", B, poll.ID, ["Pizza", "Salad"])
    vote = again_a.event(17)
    chosen = again_a.call("decrypt_poll_vote", again(vote)).selectedOptions
    assert list(chosen) == digest("Pizza", "Salad")


def test_a_contacts_poll_keeps_its_secret_and_the_session_can_vote_in_it(clients, world, tmp_path):
    a = clients("s1", A)
    poll_id = world.poll_from("s1", B, "Dinner?", ["Early", "Late"])
    poll = a.event(17)
    assert poll.Info.ID == poll_id
    secret = poll.Message.messageContextInfo.messageSecret
    # message.go storeMessageSecret: under the chat and the sender the message came with
    assert secrets_of(tmp_path / "s1.sqlite3") == [(pn(A), pn(B), pn(B), poll_id, secret)]

    vote = a.call("build_poll_vote", again(poll.Info), ["Late"])
    key = vote.pollUpdateMessage.pollCreationMessageKey
    assert (key.remoteJID, key.fromMe, key.ID, key.participant) == (pn(B), False, poll_id, "")
    sent = a.call("send_message", jid(pn(B)), again(vote))
    assert world.vote_sent("s1", sent.ID) == ["Late"]

    unknown = poll.Info
    unknown.ID = "3EB0000000000000000000"
    failed = a.fails("build_poll_vote", again(unknown), ["Late"])
    assert (failed.kind, failed.message) == (
        "BuildPollVoteError",
        "failed to encrypt poll vote: original message secret key not found",
    )
