"""A user-space TCP proxy on loopback for partitions: what goes through it can be cut (held, as
a link that is down holds it: nothing arrives, nothing is refused, TCP's buffers fill and the
sender blocks; it all arrives once healed) and delayed. This kernel has no `netem`, and every
test's traffic stays on 127.0.0.0/8: a process given the proxy's port instead of the service's
is partitioned from that service alone."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream` (a port on 127.0.0.1), in a thread of its own."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.delay = 0.0  # seconds added to every chunk, each way
        self.loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self._server = self._call(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def cut(self) -> None:
        """Nothing goes through, either way, on open connections or new ones, until `heal`."""
        self.loop.call_soon_threadsafe(self._flowing.clear)

    def heal(self) -> None:
        self.loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _close(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled only by `close`: the connection just ends (asyncio logs a connection handler
        # that ends cancelled as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await self._flowing.wait()  # made while cut: its SYN got an answer, nothing more
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                writer.close()
                return
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()
