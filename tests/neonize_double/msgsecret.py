"""whatsmeow's message secrets (msgsecret.go, util/hkdfutil, util/gcmutil) as plain functions, for
the neonize double's client (polls it sends, votes it decrypts) and for FakeWhatsApp's phones
(the votes a contact's WhatsApp encrypts).

A message that others may modify later (a poll: its votes) carries 32 random bytes in
`messageContextInfo.messageSecret`. Every device that sends or receives it keeps the secret
(`whatsmeow_message_secrets`); a modification (a vote) is AES-256-GCM encrypted with a key
derived from it by HKDF-SHA256, bound to the original message's id and sender and to the
modification's sender. Citations are whatsmeow HEAD 33cfac51 (2026-08-21).
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# msgsecret.go MsgSecretType
POLL_VOTE = "Poll Vote"
REACTION = "Enc Reaction"
COMMENT = "Enc Comment"
REPORT_TOKEN = "Report Token"
EVENT_RESPONSE = "Event Response"
EVENT_EDIT = "Event Edit"
MESSAGE_EDIT = "Message Edit"
POLL_EDIT = "Poll Edit"
POLL_ADD_OPTION = "Poll Add Option"
BOT_MESSAGE = "Bot Message"

IV_SIZE = 12  # cipher.NewGCM: the standard nonce size (msgsecret.go: random.Bytes(12))
AUTHENTICATION_FAILED = "cipher: message authentication failed"  # Go crypto/cipher errOpen
NONCE_PANIC = "panic: crypto/cipher: incorrect nonce length given to GCM"


class AuthenticationFailed(ValueError):
    """gcm.Open's error: wrong key, IV, additional data or a tampered ciphertext."""

    def __init__(self) -> None:
        super().__init__(AUTHENTICATION_FAILED)


class NonceLengthPanic(ValueError):
    """Go's GCM panics (it does not return an error) on an IV that is not 12 bytes."""

    def __init__(self) -> None:
        super().__init__(NONCE_PANIC)


def non_ad(jid: str) -> str:
    """types.JID ToNonAD().String(): `user[.agent][:device]@server` → `user@server` (a JID
    without a user is its server, an empty one "")."""
    user, at, server = jid.partition("@")
    if not at:
        return user  # ParseJID("x") is a server JID: String() is "x"
    user = user.partition(":")[0].partition(".")[0]
    return f"{user}@{server}" if user else server


def secret_key(
    modification_type: str,
    modification_sender: str,
    orig_id: str,
    orig_sender: str,
    secret: bytes,
) -> tuple[bytes, bytes]:
    """msgsecret.go generateMsgSecretKey: HKDF-SHA256 (no salt) of the original message's
    secret with info = orig id ‖ orig sender ‖ modification sender ‖ modification type (JIDs as
    non-AD strings), 32 bytes; the additional data "<orig id>\\x00<modification sender>" for
    poll votes, event responses and the untyped use (bot messages), none (b"") otherwise."""
    orig_sender, modification_sender = non_ad(orig_sender), non_ad(modification_sender)
    info = (orig_id + orig_sender + modification_sender + modification_type).encode()
    key = HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(secret)
    additional = b""
    if modification_type in (POLL_VOTE, EVENT_RESPONSE, ""):
        additional = f"{orig_id}\x00{modification_sender}".encode()
    return key, additional


def encrypt(key: bytes, iv: bytes, plaintext: bytes, additional_data: bytes = b"") -> bytes:
    """gcmutil.Encrypt: AES-256-GCM, the 16-byte tag appended (gcm.Seal)."""
    if len(iv) != IV_SIZE:
        raise NonceLengthPanic
    return AESGCM(key).encrypt(iv, plaintext, additional_data or None)


def decrypt(key: bytes, iv: bytes, ciphertext: bytes, additional_data: bytes = b"") -> bytes:
    """gcmutil.Decrypt (gcm.Open): AuthenticationFailed when the tag does not verify (a short
    ciphertext too), NonceLengthPanic for an IV that is not 12 bytes."""
    if len(iv) != IV_SIZE:
        raise NonceLengthPanic
    try:
        return AESGCM(key).decrypt(iv, ciphertext, additional_data or None)
    except InvalidTag:
        raise AuthenticationFailed from None


def hash_options(names: list[str]) -> list[bytes]:
    """msgsecret.go HashPollOptions: the SHA-256 of each option name (a vote names these)."""
    return [hashlib.sha256(name.encode()).digest() for name in names]
