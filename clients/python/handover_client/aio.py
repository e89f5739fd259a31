"""The service side of `handover run`, for asyncio.

    from handover_client import aio

    async def main():
        h = await aio.connect()
        h.on("active", lambda leader: print("active"))
        await h.process(handle)   # async handle(payload, id): True done; False or raise: retry

Callbacks are plain functions called on the loop; `process` runs until a stop
signal, after the task running is done.
"""

import asyncio
import signal

from ._lines import CHANNEL_VERSION, Events, channel_socket, line, notify_ready, state_line, task_id

__all__ = ["CHANNEL_VERSION", "Handover", "connect"]


class Handover(Events):
    """The channel of the `handover run` this process runs under (use `connect`)."""

    def __init__(self, reader, writer):
        self._stream, self._writer = reader, writer
        self._out = []
        self._tasks = asyncio.Queue()
        self._hooks = []
        self._stopping = asyncio.Event()
        self._signals_taken = False
        super().__init__(lambda id, p: self._tasks.put_nowait((id, p)))
        self.closed = asyncio.ensure_future(self._read())

    async def ready(self):
        """READY=1 on $NOTIFY_SOCKET, and on the channel."""
        notify_ready()
        await self._send(line(cmd="ready"))

    async def publish_state(self, state):
        await self._send(state_line(state))

    publishState = publish_state

    async def checkpoint(self, id):
        await self._send(line(cmd="checkpoint", id=task_id(id)))

    async def submit(self, id, payload=None):
        await self._send(line(cmd="submit", id=task_id(id), payload=payload))

    async def leave(self):
        await self._send(line(cmd="leave"))

    async def watchdog(self):
        """The service is alive (`handover run --watchdog`): see the threaded
        client's `watchdog`."""
        await self._send(line(cmd="watchdog"))

    def on_shutdown(self, hook):
        """Runs `hook` (a function or a coroutine function) on a stop signal, after
        the running task; `process` then returns."""
        self._hooks.append(hook)
        self._take_signals()
        return hook

    onShutdown = on_shutdown

    async def process(self, handler):
        """Runs the queue's tasks while active, one at a time, until a stop signal:
        `await handler(payload, id)` (or a plain return) True when done, False or
        raise to run it again."""
        self._take_signals()
        stopping = asyncio.ensure_future(self._stopping.wait())
        while not self._stopping.is_set():
            if self._tasks.empty():
                taken = asyncio.ensure_future(self._tasks.get())
                await asyncio.wait([taken, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not taken.done():
                    taken.cancel()
                    break
                id, payload = taken.result()
            else:
                id, payload = self._tasks.get_nowait()
            done = False
            try:
                done = handler(payload, id)
                if asyncio.iscoroutine(done):
                    done = await done
            except Exception as e:
                self._warn("task %d: %r" % (id, e))
            except BaseException:
                # Cancelled (or exiting) in the middle of the task: it did not
                # finish; say so now, without waiting, or the window stays full.
                self._out.append(line(cmd="retry", id=id))
                self._flush()
                raise
            await self._send(line(cmd="done" if done else "retry", id=id))
        await self._shut_down()

    async def wait(self):
        """Until the channel closes or a stop signal."""
        await asyncio.wait([self.closed, asyncio.ensure_future(self._stopping.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if self._stopping.is_set():
            await self._shut_down()

    async def _shut_down(self):
        for hook in self._hooks:
            try:
                result = hook()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as e:
                self._warn("shutdown hook: %r" % (e,))
        self._hooks = []
        if self._out:
            self._flush()
        await self._writer.drain()
        self._writer.close()

    async def _send(self, data):
        # The lines of one pass of the loop leave in one write.
        self._out.append(data)
        if len(self._out) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        if self._writer.transport.get_write_buffer_size() > 1 << 20:
            try:
                await self._writer.drain()
            except OSError as e:
                self._warn("the channel: %s" % e)

    def _flush(self):
        data, self._out = b"".join(self._out), []
        try:
            self._writer.write(data)
        except OSError as e:
            self._warn("the channel: %s" % e)

    async def _read(self):
        while True:
            try:
                text = await self._stream.readline()
            except (OSError, ValueError):
                break
            if not text:
                break
            self._feed(text.decode("utf-8", "replace"))
        self._emit("close")

    def _take_signals(self):
        if self._signals_taken:
            return
        self._signals_taken = True
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)


async def connect(fd=None):
    """Connects to the channel of the `handover run` this process runs under."""
    reader, writer = await asyncio.open_unix_connection(sock=channel_socket(fd), limit=1 << 20)
    return Handover(reader, writer)
