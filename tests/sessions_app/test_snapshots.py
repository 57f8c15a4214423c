"""Encrypted auth snapshots on real S3 (SeaweedFS): taken under the lease, restored anywhere."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from sessions_app.models import Session
from sessions_app.services import LeaseLost, snapshots
from workers.engines.store import KeyValueStore

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(make_session) -> Session:
    return make_session(lease_epoch=3)


def store_in(directory: Path, **values: str) -> Path:
    KeyValueStore(directory).set(**values)
    return directory


def test_a_snapshot_restores_elsewhere_and_is_encrypted(session: Session, tmp_path: Path) -> None:
    source = store_in(tmp_path / "a", device="secret-device-key", phone_number="+15550001")

    key = snapshots.snapshot_take(session_id=session.id, epoch=3, auth_dir=source)

    assert key.startswith(f"{session.id}/epoch-0000000003/")
    with storages["sessions"].open(key, "rb") as blob:
        assert b"secret-device-key" not in blob.read()
    session.refresh_from_db()
    assert (session.snapshot_key, session.snapshot_epoch, session.snapshot_number) == (key, 3, 1)
    assert snapshots.snapshot_restore(session_id=session.id, auth_dir=tmp_path / "b")
    assert KeyValueStore(tmp_path / "b").get("device") == "secret-device-key"
    # The same snapshot again: the local store already is it.
    assert not snapshots.snapshot_restore(session_id=session.id, auth_dir=tmp_path / "b")


def test_a_worker_that_lost_the_lease_cannot_make_its_snapshot_latest(
    session: Session, tmp_path: Path
) -> None:
    current = snapshots.snapshot_take(
        session_id=session.id, epoch=3, auth_dir=store_in(tmp_path / "new", device="new")
    )
    with pytest.raises(LeaseLost):
        snapshots.snapshot_take(
            session_id=session.id, epoch=2, auth_dir=store_in(tmp_path / "old", device="old")
        )

    session.refresh_from_db()
    assert session.snapshot_key == current
    _, files = storages["sessions"].listdir(f"{session.id}/epoch-0000000002")
    assert files == []  # its upload was removed again


def test_a_tampered_snapshot_is_refused_and_nothing_is_deleted(
    session: Session, tmp_path: Path
) -> None:
    key = snapshots.snapshot_take(
        session_id=session.id, epoch=3, auth_dir=store_in(tmp_path / "a", device="d")
    )
    storage = storages["sessions"]
    with storage.open(key, "rb") as blob:
        data = bytearray(blob.read())
    data[-1] ^= 1
    storage.delete(key)
    storage.save(key, ContentFile(bytes(data)))
    local = store_in(tmp_path / "b", device="local")

    with pytest.raises(snapshots.SnapshotInvalid):
        snapshots.snapshot_restore(session_id=session.id, auth_dir=local)

    assert KeyValueStore(local).get("device") == "local"  # untouched
    assert storage.exists(key)


def test_a_snapshot_moved_to_another_session_does_not_decrypt(
    make_session,
    tmp_path: Path,
) -> None:
    first, second = make_session(lease_epoch=1), make_session(lease_epoch=1)
    key = snapshots.snapshot_take(
        session_id=first.id, epoch=1, auth_dir=store_in(tmp_path / "a", device="d")
    )
    Session.objects.filter(pk=second.pk).update(
        snapshot_key=key, snapshot_epoch=1, snapshot_number=1
    )
    with pytest.raises(snapshots.SnapshotInvalid):
        snapshots.snapshot_restore(session_id=second.id, auth_dir=tmp_path / "b")


def test_another_encryption_key_cannot_read_it(session: Session, tmp_path: Path, settings) -> None:
    snapshots.snapshot_take(
        session_id=session.id, epoch=3, auth_dir=store_in(tmp_path / "a", device="d")
    )
    settings.SESSION_ENCRYPTION_KEY = base64.b64decode(base64.b64encode(b"k" * 32))
    with pytest.raises(snapshots.SnapshotInvalid):
        snapshots.snapshot_restore(session_id=session.id, auth_dir=tmp_path / "b")


def test_no_store_means_no_snapshot(session: Session, tmp_path: Path) -> None:
    assert snapshots.snapshot_take(session_id=session.id, epoch=3, auth_dir=tmp_path) is None
    assert not snapshots.snapshot_restore(session_id=session.id, auth_dir=tmp_path)
