"""A session's send queue, worked through by the worker that holds the session.

One message at a time, oldest first, only while connected: `sending` is written before the engine
is called; after the call, `sent` (or a retry with backoff, or `failed`). Paced per session
(messaging.services.pacing); with pacing off, the next message is marked `sending` in the same
transaction as the last one's `sent`. Woken by NOTIFY gateway_messages within milliseconds; on
PostgreSQL an empty queue makes no query until then (the worker's sweep wakes the senders of
sessions with work every TTL/3, for a wake-up lost meanwhile); on SQLite it polls. On start (a
claim), messages a previous owner left in `sending` are recovered first. When woken, it also
retries inbound media that could not be stored (at most every 30 s, and at once when the worker's
storage is back after an outage: `retry_media`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Protocol, cast

from django.conf import settings
from django.core.files.storage import default_storage

from gateway.core import logging as log_context
from gateway.core import tracing
from gateway.core.failpoints import failpoint
from messaging import services as messages
from messaging.services import pacing, preview
from sessions_app import services as sessions
from workers.engines.base import (
    Contact,
    Engine,
    EngineError,
    LinkPreview,
    Location,
    Media,
    MessageKind,
    OutboundMessage,
    Poll,
)
from workers.runtime.db import db, io

logger = logging.getLogger(__name__)
MEDIA_RETRY_SECONDS = 30.0
NEVER_SENT = ("not_connected", "not_started", "lookup_failed", "upload_failed", "server_busy")


def _media_to_file(name: str) -> str:
    """The stored media as a local file for the engine (S3 objects are downloaded)."""
    with (
        default_storage.open(name) as source,
        tempfile.NamedTemporaryFile(prefix="gateway-send-", delete=False) as target,
    ):
        for chunk in source.chunks():
            target.write(chunk)
    return target.name


class Sending(Protocol):
    """What a sender needs of its session (a SessionRunner is one)."""

    id: uuid.UUID
    key: str
    epoch: int
    engine: Engine
    connected: bool

    async def retry_pending_media(self) -> None: ...

    async def drop(self) -> None: ...


class Sender:
    def __init__(
        self,
        runner: Sending,
        *,
        poll_seconds: float,
        idle_seconds: float | None,
        worker_id: uuid.UUID | None,
    ) -> None:
        self.runner = runner
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds  # None: an empty queue waits for a wake-up
        self.worker_id = worker_id
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        # When the pause this sender chose after its last message ends (loop time; 0: it has
        # sent none), kept here as well as in the cache: the pace it keeps when the cache is down.
        self.paused_until = 0.0
        self.media_due = 0.0  # the event loop's time from which inbound media are retried

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"sender-{self.runner.key}"
            )

    async def _preview(self, job: messages.SendJob) -> LinkPreview | None:
        """The link preview asked for (`link_preview`), made now, off the event loop."""
        if job.type != "text" or not job.payload.get("link_preview"):
            return None
        try:
            made = await io(preview.link_preview, job.text)
        except Exception:
            logger.warning("link preview failed", exc_info=True)
            return None
        return LinkPreview(**made) if made else None

    def poke(self) -> None:
        self.wake.set()

    def retry_media(self) -> None:
        """Retry the session's pending inbound media now (the storage is back)."""
        self.media_due = 0.0
        self.poke()

    def cancel(self) -> None:
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    async def _wait(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()

    async def _run(self) -> None:
        runner = self.runner
        accepts_ids = runner.engine.accepts_message_ids
        poll = self.poll_seconds
        recovered = False
        taken: messages.NextSend | None = None  # taken with the last one's outcome
        loop = asyncio.get_running_loop()
        with log_context.bind(session_id=runner.key, worker_id=str(self.worker_id)):
            while True:
                try:
                    if not recovered:
                        failed = await db(
                            messages.messages_recover,
                            session_id=runner.id,
                            epoch=runner.epoch,
                            accepts_ids=accepts_ids,
                        )
                        recovered = True
                        if failed:
                            logger.warning("%s interrupted message(s) failed", failed)
                    if not runner.connected:
                        # Poked when it connects: thousands of sessions waiting for a scan cost
                        # nothing (a timed wait woke each of them every `poll` seconds).
                        await self._wait(None)
                        continue
                    if loop.time() >= self.media_due:
                        self.media_due = loop.time() + MEDIA_RETRY_SECONDS
                        await runner.retry_pending_media()
                    # The pause comes before a message is taken, so `sending` is written just
                    # before the engine call, never across a pause.
                    await self._pace()
                    if not runner.connected:
                        continue
                    queue, taken = taken, None
                    if queue is None:
                        queue = await db(
                            messages.message_next,
                            session_id=runner.id,
                            epoch=runner.epoch,
                            accepts_ids=accepts_ids,
                        )
                    if queue.job is not None:
                        taken = await self._send(queue.job)
                    else:
                        await self._wait(
                            self.idle_seconds if queue.due_in is None else queue.due_in
                        )
                except sessions.LeaseLost:
                    logger.warning("lease lost while sending; closing the connection")
                    await runner.drop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:  # the database went away, …: wait, then go on
                    logger.exception("send queue step failed; retrying")
                    await asyncio.sleep(poll)

    async def _pace(self) -> None:
        if not pacing.pacing_on():
            return
        loop = asyncio.get_running_loop()
        try:
            wait = await io(pacing.pace_wait_seconds, self.runner.id)
        except Exception:  # noqa: BLE001 - cache down: keep a safe pace locally
            logger.warning("pacing state unavailable; pacing locally")
            # The pause after this sender's last message; the longest interval before its first
            # (the session's last message may have been sent by another worker a moment ago).
            wait = 0.0 if self.paused_until else float(settings.SEND_INTERVAL_MAX_SECONDS)
        wait = max(wait, self.paused_until - loop.time())
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send(self, job: messages.SendJob) -> messages.NextSend | None:
        """One message, in a span that joins the trace of the request that accepted it: the
        context is the one stored with the message (this task began long before that request).
        Returns the next message when it was taken with this one's outcome."""
        with (
            tracing.span(
                "message send",
                stored=job.trace_context,
                kind=tracing.SpanKind.CONSUMER,
                attributes={
                    "gateway.session.id": str(self.runner.id),
                    "gateway.message.id": str(job.message_id),
                    "gateway.message.type": job.type,
                    "gateway.message.attempt": job.attempt,
                },
            ),
            log_context.bind(message_id=str(job.message_id)),
        ):
            return await self._attempt(job)

    async def _attempt(self, job: messages.SendJob) -> messages.NextSend | None:
        runner, engine = self.runner, self.runner.engine
        path = ""
        try:
            if job.media_name:
                path = await io(_media_to_file, job.media_name)
            outbound = OutboundMessage(
                id=job.wa_message_id or job.message_id.hex,
                to=job.chat,
                type=cast(MessageKind, job.type),  # a MessageType, checked by the API
                text=job.text,
                caption=job.caption,
                media=Media(Path(path), job.media_mime_type, job.media_filename) if path else None,
                location=Location(**job.payload["location"]) if "location" in job.payload else None,
                contact=Contact(**job.payload["contact"]) if "contact" in job.payload else None,
                reaction=job.payload.get("reaction", ""),
                reply_to=job.reply_to,
                reply_to_sender=job.reply_to_sender,
                reply_to_from_me=job.reply_to_from_me,
                reply_to_text=job.reply_to_text,
                mentions=tuple(job.payload.get("mentions", ())),
                preview=await self._preview(job),
                poll=Poll(
                    job.payload["poll"]["question"],
                    tuple(job.payload["poll"]["options"]),
                    job.payload["poll"]["multiple"],
                )
                if "poll" in job.payload
                else None,
            )
            if settings.SEND_TYPING and job.type == "text":
                with contextlib.suppress(EngineError):
                    await engine.set_chat_presence(runner.key, job.chat, "typing")
                    await asyncio.sleep(min(3.0, 0.5 + len(job.text) * 0.03))
            with tracing.span(
                "engine send",
                kind=tracing.SpanKind.CLIENT,
                attributes={"gateway.engine": engine.name},
            ):
                result = await engine.send(runner.key, outbound)
        except EngineError as exc:
            # These never reached WhatsApp: any engine may try again. Other transient errors
            # are retried only where the engine takes our id (a retry cannot duplicate).
            retry = exc.code in NEVER_SENT or (not exc.permanent and engine.accepts_message_ids)
            await self._failed(job, exc.code, str(exc), retry)
            return None
        except OSError as exc:  # the stored media could not be read: storage is down
            await self._failed(job, "storage_unavailable", str(exc), retry=True)
            return None
        finally:
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        failpoint("after_send_before_commit")
        paced = pacing.pacing_on()
        following = await db(
            messages.message_sent,
            session_id=runner.id,
            epoch=runner.epoch,
            message_id=job.message_id,
            wa_message_id=result.wa_message_id,
            at=result.timestamp,
            secret=result.secret,
            take_next=not paced,  # with pacing, a pause comes first
            accepts_ids=engine.accepts_message_ids,
        )
        if not paced:
            return following
        try:
            pause = await io(pacing.pace_sent, runner.id)
        except Exception:  # noqa: BLE001 - cache down: the longest pause, kept here (`_pace`)
            pause = float(settings.SEND_INTERVAL_MAX_SECONDS)
        self.paused_until = asyncio.get_running_loop().time() + pause
        return None

    async def _failed(self, job: messages.SendJob, code: str, error: str, retry: bool) -> None:
        retrying = await db(
            messages.message_send_error,
            session_id=self.runner.id,
            epoch=self.runner.epoch,
            message_id=job.message_id,
            code=code,
            error=error,
            retry=retry,
        )
        logger.warning(
            "send failed (%s): %s; %s",
            code,
            error,
            "retrying" if retrying else "message failed",
        )
