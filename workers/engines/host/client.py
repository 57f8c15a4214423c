"""The worker's side of engine hosts: `HostedEngine` runs an engine's sessions in child processes.

- Hosts are started fresh with `subprocess` (fork + exec of a new interpreter), never forked from
  the worker, so no engine state is ever copied into a child.
- A host holds at most `sessions_per_host` sessions; a new one is started when all are full.
- Every call has a deadline (long: WhatsApp's own requests time out at 75 s and a neonize host makes
  its calls one at a time). A call that misses it means the host is stuck: the host is killed and
  replaced ("recycled"), and the call fails with a transient `EngineError`. A host is also pinged
  (answered by its event loop, not its engine): one that stops answering is recycled at once.
- A host that dies (a crash in the engine's native code, a SIGKILL) is replaced, and only its
  sessions are started again, one at a time, from their stores; each first gets a `Disconnected`
  (will_reconnect=True) so the runtime shows them as reconnecting.
- The host's stdout/stderr become log lines of ours: its own JSON lines again at their level and
  with their fields (the session's id), plain lines (native libraries print there) as they are;
  each with the worker's id, the engine and the host's pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from gateway.core import logging as log_context
from workers.engines.base import (
    BlockAction,
    Blocked,
    ChatState,
    ContactInfo,
    Disconnected,
    Engine,
    EngineError,
    Event,
    Group,
    GroupCreated,
    InboundMedia,
    LoggedOut,
    NumberCheck,
    OutboundMessage,
    ParticipantAction,
    ParticipantResult,
    PresenceState,
    Profile,
    SendResult,
    StreamReplaced,
)
from workers.engines.host import protocol

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[3]
HOST_LOG_FIELDS = frozenset({"worker_id"})
# A LogRecord's own attributes: a host's field of the same name cannot be passed as `extra`.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# When the worker stops, a host whose pipe is closed has this long to stop its sessions and exit
# before it is killed (deploy/kubernetes gives a worker pod more than the lease TTL plus this).
HOST_STOP_SECONDS = 10.0


class _Host:
    """One child process and the pipes to it."""

    _numbers = itertools.count(1)

    def __init__(self, owner: HostedEngine) -> None:
        self.owner = owner
        self.number = next(self._numbers)
        self.sessions: set[str] = set()
        self.process: asyncio.subprocess.Process | None = None
        self.pid = 0
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task] = []
        self.alive = False
        self.retired = False  # replaced on purpose: its death is not a crash
        # Threads stuck in the engine's native code (neonize): no new sessions come here, and
        # the host is retired once its sessions are gone.
        self.stuck = 0

    async def spawn(self) -> None:
        loop = asyncio.get_running_loop()
        to_host_r, to_host_w = os.pipe()
        from_host_r, from_host_w = os.pipe()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "workers.engines.host.server",
                self.owner.name,
                str(to_host_r),
                str(from_host_w),
                pass_fds=(to_host_r, from_host_w),
                cwd=ROOT,
                env=self.owner.host_env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            os.close(to_host_r)
            os.close(from_host_w)
        self.pid = self.process.pid
        reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_host_r, "rb", buffering=0)
        )
        transport, proto = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(to_host_w, "wb", buffering=0)
        )
        self._writer = asyncio.StreamWriter(transport, proto, None, loop)
        hello = await asyncio.wait_for(reader.readline(), self.owner.start_timeout)
        message = json.loads(hello or b"{}")
        if message.get("v") != protocol.VERSION or "hello" not in message:
            self.kill()
            raise EngineError(
                f"engine host speaks {message.get('v')!r}, not {protocol.VERSION}",
                code="host_version",
            )
        self.alive = True
        # The host serves many sessions: its tasks do not carry the log fields of the session
        # whose start spawned it.
        self._tasks = [
            asyncio.create_task(coroutine, context=log_context.unbound())
            for coroutine in (
                self._read(reader),
                self._forward_output(),
                self._watch(),
                self._ping(),
            )
        ]
        logger.info(
            "engine host %s started",
            self.number,
            extra={"engine": self.owner.name, "host_pid": self.pid},
        )

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            if "event" in message:
                self.owner.forward(protocol.decode_event(message["event"]))
            elif "stuck" in message:
                self.stuck = int(message["stuck"])
                self.owner.retire_if_done(self)
            elif (future := self._pending.pop(message.get("id"), None)) and not future.done():
                future.set_result(message)

    async def _forward_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self._log_output(line.decode(errors="replace").rstrip())

    def _log_output(self, line: str) -> None:
        ours = {**self.owner.log_fields, "engine": self.owner.name, "host_pid": self.pid}
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("message"), str):
            logger.info("engine host output: %s", line, extra=ours)
            return
        level = logging.getLevelName(str(record.pop("level", "INFO")))
        name, message = str(record.pop("logger", logger.name)), record.pop("message")
        record.pop("time", None)
        if "exc_info" in record:  # the host's traceback, as text
            record["traceback"] = record.pop("exc_info")
        fields = {k: v for k, v in record.items() if k not in _RECORD_ATTRIBUTES}
        logging.getLogger(name).log(
            level if isinstance(level, int) else logging.INFO,
            "%s",
            message,
            extra={**fields, **ours},
        )

    async def _watch(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        self.alive = False
        for future in self._pending.values():
            if not future.done():
                future.set_exception(EngineError("the engine host died", code="host_died"))
        self._pending.clear()
        if not self.retired:
            logger.warning(
                "engine host %s exited with %s",
                self.number,
                code,
                extra={"engine": self.owner.name, "host_pid": self.pid},
            )
            self.owner.host_died(self)

    async def _ping(self) -> None:
        """Every `ping_interval`: a host whose loop does not answer within `ping_timeout` is
        stuck (its engine calls would only time out one by one): recycle it now."""
        while self.alive:
            await asyncio.sleep(self.owner.ping_interval)
            with contextlib.suppress(EngineError):
                await self.call("ping", timeout=self.owner.ping_timeout)

    async def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        timeout = timeout or self.owner.call_timeout
        if not self.alive or self._writer is None:
            raise EngineError("the engine host is not running", code="host_died")
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(
            protocol.dumps({"id": request_id, "op": op, "args": protocol.encode(args)})
        )
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(request_id, None)
            logger.error(
                "engine host %s did not answer %s in %ss; recycling it",
                self.number,
                op,
                timeout,
                extra={"host_pid": self.pid},
            )
            self.kill()  # its death restarts its sessions on a new host
            raise EngineError(
                f"the engine host did not answer {op} in time", code="host_timeout"
            ) from None
        if not reply["ok"]:
            error = reply["error"]
            raise EngineError(error["message"], permanent=error["permanent"], code=error["code"])
        return protocol.decode_result(op, reply["result"])

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def shutdown(self, timeout: float) -> None:
        """Close the pipe (the host stops its sessions and exits); kill it if it does not."""
        self.retired = True
        if self._writer is not None:
            self._writer.close()
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.kill()
                await self.process.wait()
        for task in self._tasks:
            task.cancel()


class HostedEngine(Engine):
    """An engine whose sessions run in supervised host processes."""

    def __init__(
        self,
        name: str,
        *,
        sessions_per_host: int = 20,
        call_timeout: float = 240.0,
        start_timeout: float = 30.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 15.0,
        restart_delay: float = 1.0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.accepts_message_ids = name == "sandbox"
        self.sessions_per_host = sessions_per_host
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.restart_delay = restart_delay
        self.extra_env = env or {}
        self.hosts: list[_Host] = []
        self._placement: dict[str, _Host] = {}
        self._auth_dirs: dict[str, Path] = {}
        self._lock = asyncio.Lock()  # placement and host changes, one at a time
        self._restarts: set[asyncio.Task] = set()
        self._closing = False
        self.deaths: list[int] = []  # hosts that died without being retired (crashes, kills)
        self.log_fields: dict[str, str] = {}

    def forward(self, event: Event) -> None:
        """An event from a host. Events that end a session inside the host (logged out, stream
        replaced, a disconnect it will not retry) also end it here, so nothing restarts it."""
        if isinstance(event, LoggedOut | StreamReplaced) or (
            isinstance(event, Disconnected) and not event.will_reconnect
        ):
            self._forget(event.session_id)
        self.emit(event)

    def host_env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env}

    async def _host_with_room(self) -> _Host:
        for host in self.hosts:
            if host.alive and not host.stuck and len(host.sessions) < self.sessions_per_host:
                return host
        host = _Host(self)
        await host.spawn()
        self.hosts.append(host)
        return host

    def _host_of(self, session_id: str) -> _Host:
        host = self._placement.get(session_id)
        if host is None:
            raise EngineError(
                f"session {session_id} is not started", permanent=True, code="not_started"
            )
        return host

    # --- supervision --------------------------------------------------------------------------

    def host_died(self, host: _Host) -> None:
        if self._closing:
            return
        self.deaths.append(host.pid)
        task = asyncio.get_running_loop().create_task(self._replace(host))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _replace(self, dead: _Host) -> None:
        sessions = sorted(dead.sessions)
        for session_id in sessions:
            self.emit(Disconnected(session_id, reason="engine host restarted", will_reconnect=True))
        async with self._lock:
            if dead in self.hosts:
                self.hosts.remove(dead)
        await asyncio.sleep(self.restart_delay)
        for session_id in sessions:  # one at a time, as the engine requires
            if self._closing or self._placement.get(session_id) is not dead:
                continue
            try:
                await self._start_on_host(session_id, self._auth_dirs[session_id])
            except EngineError as exc:
                logger.error(
                    "could not restart session on a new engine host: %s",
                    exc,
                    extra={"session_id": session_id},
                )
                self._placement.pop(session_id, None)
                self.emit(
                    Disconnected(
                        session_id, reason=str(exc), will_reconnect=False, code="host_failed"
                    )
                )

    async def _start_on_host(self, session_id: str, auth_dir: Path) -> None:
        async with self._lock:
            host = await self._host_with_room()
            host.sessions.add(session_id)
            self._placement[session_id] = host
            self._auth_dirs[session_id] = Path(auth_dir)
        await host.call("start", session_id=session_id, auth_dir=str(auth_dir))

    # --- commands -----------------------------------------------------------------------------

    async def start(self, session_id: str, auth_dir: Path) -> None:
        if session_id in self._placement:
            raise EngineError(
                f"session {session_id} is already started", permanent=True, code="already_started"
            )
        # The hosts' log lines carry what the worker's context says about itself (its id).
        self.log_fields.update(
            (k, v) for k, v in log_context.current().items() if k in HOST_LOG_FIELDS
        )
        try:
            await self._start_on_host(session_id, auth_dir)
        except EngineError:
            self._forget(session_id)
            raise

    def _forget(self, session_id: str) -> None:
        host = self._placement.pop(session_id, None)
        self._auth_dirs.pop(session_id, None)
        if host is not None:
            host.sessions.discard(session_id)
            self.retire_if_done(host)

    def retire_if_done(self, host: _Host) -> None:
        """A host with stuck threads is shut down once it holds no session (its threads end
        with the process)."""
        if not host.stuck or host.sessions or host.retired or self._closing:
            return
        logger.info(
            "retiring engine host %s: %s connection(s) stuck in it",
            host.number,
            host.stuck,
            extra={"engine": self.name, "host_pid": host.pid},
        )
        if host in self.hosts:
            self.hosts.remove(host)
        # Its stuck threads keep the process from exiting by itself: a short wait, then a kill.
        task = asyncio.get_running_loop().create_task(host.shutdown(timeout=3))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def stop(self, session_id: str) -> None:
        host = self._placement.get(session_id)
        if host is None:
            return
        try:
            await host.call("stop", session_id=session_id)
        finally:
            self._forget(session_id)

    async def logout(self, session_id: str) -> None:
        await self._host_of(session_id).call("logout", session_id=session_id)
        self._forget(session_id)

    async def send(self, session_id: str, message: OutboundMessage) -> SendResult:
        return await self._host_of(session_id).call("send", session_id=session_id, message=message)

    async def edit_message(
        self, session_id: str, chat: str, wa_message_id: str, text: str, kind: str = "text"
    ) -> SendResult:
        return await self._host_of(session_id).call(
            "edit_message",
            session_id=session_id,
            chat=chat,
            wa_message_id=wa_message_id,
            text=text,
            kind=kind,
        )

    async def revoke_message(
        self, session_id: str, chat: str, wa_message_id: str, sender: str = ""
    ) -> SendResult:
        return await self._host_of(session_id).call(
            "revoke_message",
            session_id=session_id,
            chat=chat,
            wa_message_id=wa_message_id,
            sender=sender,
        )

    async def request_pair_code(self, session_id: str, phone_number: str) -> str:
        return await self._host_of(session_id).call(
            "request_pair_code", session_id=session_id, phone_number=phone_number
        )

    async def check_numbers(self, session_id: str, phone_numbers: list[str]) -> list[NumberCheck]:
        return await self._host_of(session_id).call(
            "check_numbers", session_id=session_id, phone_numbers=phone_numbers
        )

    async def mark_read(
        self, session_id: str, chat: str, message_ids: list[str], sender: str = ""
    ) -> None:
        await self._host_of(session_id).call(
            "mark_read", session_id=session_id, chat=chat, message_ids=message_ids, sender=sender
        )

    async def set_presence(self, session_id: str, state: PresenceState) -> None:
        await self._host_of(session_id).call("set_presence", session_id=session_id, state=state)

    async def set_chat_presence(self, session_id: str, chat: str, state: ChatState) -> None:
        await self._host_of(session_id).call(
            "set_chat_presence", session_id=session_id, chat=chat, state=state
        )

    async def subscribe_presence(self, session_id: str, chat: str) -> None:
        await self._host_of(session_id).call("subscribe_presence", session_id=session_id, chat=chat)

    async def blocklist(self, session_id: str) -> list[Blocked]:
        return await self._host_of(session_id).call("blocklist", session_id=session_id)

    async def update_blocklist(
        self, session_id: str, jid: str, action: BlockAction
    ) -> list[Blocked]:
        return await self._host_of(session_id).call(
            "update_blocklist", session_id=session_id, jid=jid, action=action
        )

    async def contact(self, session_id: str, jid: str) -> ContactInfo:
        return await self._host_of(session_id).call("contact", session_id=session_id, jid=jid)

    async def phone_of_lid(self, session_id: str, lid: str) -> str:
        return await self._host_of(session_id).call("phone_of_lid", session_id=session_id, lid=lid)

    async def profile(self, session_id: str) -> Profile:
        return await self._host_of(session_id).call("profile", session_id=session_id)

    async def update_profile(
        self, session_id: str, *, name: str | None = None, about: str | None = None
    ) -> Profile:
        return await self._host_of(session_id).call(
            "update_profile", session_id=session_id, name=name, about=about
        )

    async def set_profile_picture(self, session_id: str, jpeg_base64: str) -> str:
        return await self._host_of(session_id).call(
            "set_profile_picture", session_id=session_id, jpeg_base64=jpeg_base64
        )

    async def groups(self, session_id: str) -> list[Group]:
        return await self._host_of(session_id).call("groups", session_id=session_id)

    async def group_info(self, session_id: str, jid: str) -> Group:
        return await self._host_of(session_id).call("group_info", session_id=session_id, jid=jid)

    async def create_group(
        self, session_id: str, subject: str, participants: list[str]
    ) -> GroupCreated:
        return await self._host_of(session_id).call(
            "create_group", session_id=session_id, subject=subject, participants=participants
        )

    async def update_group(
        self,
        session_id: str,
        jid: str,
        *,
        subject: str | None = None,
        description: str | None = None,
        announce: bool | None = None,
        locked: bool | None = None,
    ) -> Group:
        return await self._host_of(session_id).call(
            "update_group",
            session_id=session_id,
            jid=jid,
            subject=subject,
            description=description,
            announce=announce,
            locked=locked,
        )

    async def set_group_picture(self, session_id: str, jid: str, jpeg_base64: str) -> str:
        return await self._host_of(session_id).call(
            "set_group_picture", session_id=session_id, jid=jid, jpeg_base64=jpeg_base64
        )

    async def update_participants(
        self, session_id: str, jid: str, action: ParticipantAction, participants: list[str]
    ) -> list[ParticipantResult]:
        return await self._host_of(session_id).call(
            "update_participants",
            session_id=session_id,
            jid=jid,
            action=action,
            participants=participants,
        )

    async def group_invite_link(self, session_id: str, jid: str, revoke: bool = False) -> str:
        return await self._host_of(session_id).call(
            "group_invite_link", session_id=session_id, jid=jid, revoke=revoke
        )

    async def join_group(self, session_id: str, link: str) -> str:
        return await self._host_of(session_id).call("join_group", session_id=session_id, link=link)

    async def leave_group(self, session_id: str, jid: str) -> None:
        await self._host_of(session_id).call("leave_group", session_id=session_id, jid=jid)

    async def download(self, session_id: str, media: InboundMedia, into: Path) -> int:
        """The host writes the file itself (same machine): no media bytes cross the pipe."""
        host = self._host_of(session_id)
        return await host.call("download", session_id=session_id, media=media, into=str(into))

    async def probe(self, session_id: str) -> None:
        await self._host_of(session_id).call("probe", session_id=session_id)

    async def control(self, session_id: str, op: str, **args: Any) -> Any:
        """A sandbox control (`scan`, `receive`, …) for a sandbox running in a host."""
        if op not in protocol.SANDBOX_OPS:
            raise EngineError(f"unknown control {op!r}", permanent=True, code="bad_request")
        return await self._host_of(session_id).call(op, session_id=session_id, **args)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(
            *(host.shutdown(timeout=HOST_STOP_SECONDS) for host in self.hosts),
            return_exceptions=True,
        )
        self.hosts.clear()
        self._placement.clear()

    def host_restarts(self) -> int:
        return len(self.deaths)  # each dead host was replaced (recycled ones too: killed)

    def host_pids(self) -> list[int]:
        return [host.pid for host in self.hosts if host.alive]
