"""The host's side: runs one engine in this fresh process and serves the worker's calls.

Started by `HostedEngine` as `python -m workers.engines.host.server ENGINE FD_IN FD_OUT`. EOF on
FD_IN means the worker is gone: the host stops its sessions (keeping their stores) and exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import os
import sys
import threading
from pathlib import Path

from gateway.core.logging import bind, log_config
from workers.engines.base import Engine, EngineError
from workers.engines.host import protocol

logger = logging.getLogger("workers.engines.host")


def make_engine(kind: str) -> Engine:
    if kind == "sandbox":
        from workers.engines.sandbox import SandboxEngine, SandboxTimings, SandboxWorld

        timings = SandboxTimings(**json.loads(os.environ.get("SANDBOX_TIMINGS", "{}")))
        return SandboxEngine(
            SandboxWorld(Path(os.environ["SANDBOX_DIR"])),
            worker=os.environ.get("ENGINE_HOST_WORKER", ""),
            timings=timings,
        )
    if kind == "neonize":
        from workers.engines.neonize.engine import NeonizeEngine

        return NeonizeEngine(
            retry_first=float(os.environ.get("NEONIZE_RETRY_FIRST", "2")),
            retry_max=float(os.environ.get("NEONIZE_RETRY_MAX", "60")),
            settle=float(os.environ.get("NEONIZE_SETTLE", "0.5")),
        )
    raise SystemExit(f"unknown engine {kind!r}")


class HostServer:
    def __init__(self, engine: Engine, out: asyncio.StreamWriter) -> None:
        self.engine = engine
        self.out = out
        if hasattr(engine, "on_stuck"):  # neonize: connections stuck in its Go side
            engine.on_stuck = lambda count: self.send({"stuck": count})

    def send(self, message: dict) -> None:
        self.out.write(protocol.dumps(message))

    async def forward_events(self) -> None:
        async for event in self.engine.events():
            self.send({"event": protocol.encode(event)})

    async def handle(self, request: dict) -> None:
        op = request.get("op", "")
        if op == "ping":  # the worker's liveness check: answered by this loop, never the engine
            self.send({"id": request["id"], "ok": True, "result": None})
            return
        session_id = (request.get("args") or {}).get("session_id")
        with bind(**({"session_id": session_id} if session_id else {})):
            await self._handle(op, request)

    async def _handle(self, op: str, request: dict) -> None:
        try:
            allowed = protocol.OPS | (
                protocol.SANDBOX_OPS if self.engine.name == "sandbox" else set()
            )
            if op not in allowed:
                raise EngineError(f"unknown operation {op!r}", permanent=True, code="bad_request")
            args = protocol.decode_args(op, request.get("args") or {})
            result = await getattr(self.engine, op)(**args)
            self.send({"id": request["id"], "ok": True, "result": protocol.encode(result)})
        except EngineError as exc:
            error = {"message": str(exc), "permanent": exc.permanent, "code": exc.code}
            self.send({"id": request["id"], "ok": False, "error": error})
        except Exception as exc:
            logger.exception("host operation %s failed", op)
            error = {
                "message": f"{type(exc).__name__}: {exc}",
                "permanent": False,
                "code": "host_error",
            }
            self.send({"id": request["id"], "ok": False, "error": error})


async def serve(kind: str, fd_in: int, fd_out: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd_in, "rb", buffering=0)
    )
    transport, writer_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(fd_out, "wb", buffering=0)
    )
    out = asyncio.StreamWriter(transport, writer_protocol, None, loop)
    engine = make_engine(kind)
    server = HostServer(engine, out)
    server.send({"hello": {"engine": kind, "pid": os.getpid()}})
    events = asyncio.create_task(server.forward_events())
    tasks: set[asyncio.Task] = set()
    try:
        while line := await reader.readline():
            request = json.loads(line)
            if request.get("v") != protocol.VERSION:
                continue
            task = asyncio.create_task(server.handle(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        await engine.close()
        events.cancel()


def main() -> None:
    # JSON lines like every process's; the worker reads them from the host's output and logs
    # each again at its level, with the worker's and the host's ids added.
    logging.config.dictConfig(log_config(os.environ.get("LOG_LEVEL", "INFO")))
    kind, fd_in, fd_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    asyncio.run(serve(kind, fd_in, fd_out))
    # Every session is stopped and its store closed. A connection thread stuck in neonize's Go
    # side (a stop during linking: its connect() never returns) would keep the interpreter from
    # exiting for ever, and the worker would have to kill the host: exit without waiting for it.
    stuck = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if stuck:
        logger.warning("exiting with %d engine threads stuck", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
