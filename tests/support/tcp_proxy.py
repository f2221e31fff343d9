"""A TCP proxy in front of a real server, for faults a stopped server cannot show: ``hang``
keeps every connection open but stops forwarding bytes (a server that accepts and never
answers, a network that black-holes), ``cut`` drops every connection and refuses new ones
(a server gone), ``resume`` forwards again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def hang(self) -> None:
        self._flowing.clear()

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            writer.close()

    def resume(self) -> None:
        self._cut = False
        self._flowing.set()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        self._flowing.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()  # hung: what was read is held back
                if self._cut:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            with contextlib.suppress(Exception):
                sink.close()


@asynccontextmanager
async def proxy(host: str, port: int) -> AsyncIterator[TcpProxy]:
    front = TcpProxy(host, port)
    await front.start()
    try:
        yield front
    finally:
        await front.aclose()
