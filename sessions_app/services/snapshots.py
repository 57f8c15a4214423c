"""Encrypted snapshots of a session's auth state (its engine store), so any worker can restore it.

These are the keys to someone's WhatsApp account, so:
- a snapshot is taken with SQLite's online backup API, never by copying a live database file;
- it is encrypted with AES-GCM before it leaves the worker, with `SESSION_ENCRYPTION_KEY`, and the
  session id, lease epoch and snapshot number bound in as associated data: a blob moved to another
  session or replayed as another snapshot does not decrypt;
- it is stored under a key that includes the epoch, so two owners never write the same object;
- it becomes "latest" by an UPDATE conditional on the lease epoch: a worker that lost the session
  can upload, but never make its snapshot the one the new owner restores;
- a snapshot that does not decrypt is refused (`SnapshotInvalid`), never half-restored, and
  nothing is deleted because of it;
- an upload or download the storage refuses raises `StorageUnavailable`: the storage is down for
  every session then (the worker retries with backoff), unlike a store of this session's that
  cannot be read.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.utils import timezone

from gateway.core.failpoints import failpoint
from sessions_app.models import Session
from sessions_app.services.fence import LeaseLost, fenced_update

MAGIC = b"GWS1"
STORE = "store.sqlite3"
MARKER = ".snapshot"  # in the auth directory: the key of the snapshot the local store matches


class SnapshotInvalid(Exception):
    """The latest snapshot does not decrypt (tampered, another key, moved between sessions)."""


class StorageUnavailable(Exception):
    """The storage refused a snapshot's upload or download, or could not be reached."""


def _aad(session_id: object, epoch: int, number: int) -> bytes:
    return f"whatsapp-gateway/snapshot/v1/{session_id}/{epoch}/{number}".encode()


def _key() -> bytes:
    if not settings.SESSION_ENCRYPTION_KEY:
        raise RuntimeError("SESSION_ENCRYPTION_KEY is not set")
    return settings.SESSION_ENCRYPTION_KEY


def seal(data: bytes, *, session_id: object, epoch: int, number: int) -> bytes:
    nonce = secrets.token_bytes(12)
    return MAGIC + nonce + AESGCM(_key()).encrypt(nonce, data, _aad(session_id, epoch, number))


def unseal(blob: bytes, *, session_id: object, epoch: int, number: int) -> bytes:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 12 + 16:
        raise SnapshotInvalid("not a gateway snapshot")
    nonce, sealed = blob[len(MAGIC) : len(MAGIC) + 12], blob[len(MAGIC) + 12 :]
    try:
        return AESGCM(_key()).decrypt(nonce, sealed, _aad(session_id, epoch, number))
    except InvalidTag:
        raise SnapshotInvalid(
            "the snapshot does not decrypt with this key for this session"
        ) from None


def _backup(store: Path) -> bytes:
    """A consistent copy of a live SQLite database, through SQLite's online backup API."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.sqlite3"
        source = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        return copy.read_bytes()


def snapshot_take(*, session_id: uuid.UUID, epoch: int, auth_dir: Path) -> str | None:
    """Snapshot the store in `auth_dir` and make it the session's latest. Returns the storage key,
    or None when there is no store yet. Raises `LeaseLost` when `epoch` no longer owns the
    session (the upload is then removed again); storage errors propagate (callers retry)."""
    store = Path(auth_dir) / STORE
    if not store.exists():
        return None
    number = (
        Session.objects.filter(pk=session_id).values_list("snapshot_number", flat=True).first() or 0
    ) + 1
    blob = seal(_backup(store), session_id=session_id, epoch=epoch, number=number)
    storage = storages["sessions"]
    try:
        key = storage.save(
            f"{session_id}/epoch-{epoch:010d}/{number:08d}-{secrets.token_hex(4)}.snap",
            ContentFile(blob),
        )
    except Exception as exc:
        raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
    failpoint("during_snapshot_upload")
    try:
        fenced_update(
            session_id,
            epoch,
            snapshot_key=key,
            snapshot_epoch=epoch,
            snapshot_number=number,
            snapshot_at=timezone.now(),
        )
    except LeaseLost:
        storage.delete(key)
        raise
    (Path(auth_dir) / MARKER).write_text(key)
    return key


def snapshot_restore(*, session_id: uuid.UUID, auth_dir: Path, download: bool = True) -> bool:
    """Make `auth_dir` hold the session's latest snapshot, unless the local store already is that
    snapshot or newer. Returns True when it restored. Raises `SnapshotInvalid`, and
    `StorageUnavailable` when the snapshot cannot be read, or would have to be while `download`
    is False (the caller knows the storage is down)."""
    session = (
        Session.objects.filter(pk=session_id)
        .values("snapshot_key", "snapshot_epoch", "snapshot_number")
        .first()
    )
    if not session or not session["snapshot_key"]:
        return False
    auth_dir = Path(auth_dir)
    marker = auth_dir / MARKER
    if (
        (auth_dir / STORE).exists()
        and marker.exists()
        and marker.read_text() == session["snapshot_key"]
    ):
        return False  # the local store is what that snapshot was taken from (or newer)
    if not download:
        raise StorageUnavailable("the storage is down (retried with backoff)")
    try:
        with storages["sessions"].open(session["snapshot_key"], "rb") as blob:
            sealed = blob.read()
    except Exception as exc:
        raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
    data = unseal(
        sealed,
        session_id=session_id,
        epoch=session["snapshot_epoch"] or 0,  # set with every snapshot_key
        number=session["snapshot_number"],
    )
    auth_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{auth_dir / STORE}{suffix}").unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile(dir=auth_dir, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, auth_dir / STORE)  # atomic: never a half-written store
    marker.write_text(session["snapshot_key"])
    return True
