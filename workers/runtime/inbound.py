"""A session's inbound messages, as its runner receives them from the engine: each is stored once
(a duplicate after a reconnect is dropped by its WhatsApp id); its media is downloaded and stored
after it, off the session's event queue, and retried while storage or the download is down. The
message's `message.received` webhook goes once its media is stored (messaging.services.inbound).
While the worker's storage is down (`StorageRetry`) media are not downloaded at all: the message
stays pending (its media's reference is in its row) until the storage is back, when the worker
retries them at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from messaging import services as messages
from messaging.services import media as media_files
from workers.engines.base import Engine, InboundMedia, InboundMessage, spawn_into
from workers.runtime.db import db, io
from workers.runtime.storage import StorageRetry

logger = logging.getLogger(__name__)


def received(message: InboundMessage) -> messages.Received:
    """The engine's message as the messaging app stores it."""
    extra: dict = {"push_name": message.push_name, "is_group": message.is_group}
    if message.location is not None:
        extra["location"] = dataclasses.asdict(message.location)
    if message.contact is not None:
        extra["contact"] = dataclasses.asdict(message.contact)
    if message.type == "reaction":
        extra["reaction"] = message.reaction
    if message.mentions:
        extra["mentions"] = list(message.mentions)
    if message.poll is not None:
        extra["poll"] = dataclasses.asdict(message.poll)
    media = message.media
    return messages.Received(
        wa_message_id=message.wa_message_id,
        chat=message.chat,
        sender=message.sender,
        sender_phone=message.sender_phone,
        type=message.type,
        from_me=message.from_me,
        text=message.text,
        caption=message.caption,
        reply_to=message.reply_to,
        at=datetime.fromtimestamp(message.timestamp, tz=UTC),
        payload=extra,
        media=dataclasses.asdict(media) if media is not None else None,
    )


class Inbound:
    """The inbound side of one session held under one lease epoch."""

    def __init__(
        self,
        *,
        session_id: uuid.UUID,
        epoch: int,
        engine: Engine,
        downloads: asyncio.Semaphore,
        storage: StorageRetry,
        tasks: set[asyncio.Task],
    ) -> None:
        self.session_id, self.key, self.epoch = session_id, str(session_id), epoch
        self.engine = engine
        self.downloads = downloads  # shared by the worker's sessions: downloads at once
        self.storage = storage  # shared too: while it is down, one upload per retry
        self.tasks = tasks  # the runner's side tasks, cancelled when it is forgotten
        self.downloading: set[uuid.UUID] = set()

    async def receive(self, message: InboundMessage) -> None:
        if message.type == "reaction":  # recorded on the message reacted to, not a message
            await db(
                messages.reaction_record,
                session_id=self.session_id,
                epoch=self.epoch,
                chat=message.chat,
                reply_to=message.reply_to,
                emoji=message.reaction,
                sender=message.sender,
                sender_phone=message.sender_phone,
                wa_message_id=message.wa_message_id,
            )
            return
        stored = await db(
            messages.inbound_store,
            session_id=self.session_id,
            epoch=self.epoch,
            message=received(message),
        )
        if stored is not None and message.media is not None:
            # Off the event queue: a slow or large download never holds this session's receipts
            # and messages behind it.
            spawn_into(self.tasks, self._store_media(stored.pk, stored.type, message.media))

    async def _store_media(self, message_id: uuid.UUID, kind: str, media: InboundMedia) -> bool:
        if message_id in self.downloading:
            return True  # under way already
        if not self.storage.due():
            return False  # the storage is down: no download to throw away, the message waits
        fd, name = tempfile.mkstemp(prefix="gateway-media-")
        os.close(fd)
        path = Path(name)
        self.downloading.add(message_id)
        try:
            async with self.downloads:
                await self.engine.download(self.key, media, path)
                stored = await self._upload(message_id, kind, media, path)
        except Exception as exc:  # noqa: BLE001 - storage or download down: the message waits
            logger.warning(
                "media of an inbound message delayed: %s",
                exc,
                extra={"message_id": str(message_id)},
            )
            return False
        finally:
            self.downloading.discard(message_id)
            path.unlink(missing_ok=True)
        return await db(
            messages.inbound_media_stored,
            session_id=self.session_id,
            epoch=self.epoch,
            message_id=message_id,
            stored=stored,
        )

    async def _upload(
        self, message_id: uuid.UUID, kind: str, media: InboundMedia, path: Path
    ) -> media_files.StoredMedia:
        try:
            stored = await io(
                media_files.store,
                session_id=self.session_id,
                message_id=message_id,
                kind=kind,
                content=path,
                mime_type=media.mime_type,
                filename=media.filename,
            )
        except Exception as exc:
            self.storage.failed(exc)
            raise
        self.storage.succeeded()
        return stored

    async def retry_pending_media(self) -> None:
        if not self.storage.due():
            return  # tried again when the storage is back
        for message in await db(messages.media_pending, session_id=self.session_id):
            ref = message.payload.get("media_ref")
            if ref and not await self._store_media(message.pk, message.type, InboundMedia(**ref)):
                return  # still down: try again later
