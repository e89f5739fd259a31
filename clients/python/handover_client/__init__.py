"""The service side of `handover run`, for Python: the role, the active's state,
a managed work queue across failover, readiness and a clean stop.

Threads: ``connect()`` reads the channel on a thread of its own and calls the
callbacks there; tasks run one at a time on another. For asyncio, see
``handover_client.aio``.

    import handover_client

    h = handover_client.connect()
    h.on("active", lambda leader: print("active"))
    h.process(lambda payload, id: handle(payload))   # True: done; False or raise: retry
    h.wait()
"""

import collections
import os
import signal
import sys
import threading

from ._lines import CHANNEL_VERSION, Events, channel_socket, line, notify_ready, state_line, task_id

__all__ = ["CHANNEL_VERSION", "Handover", "connect"]


class Handover(Events):
    """The channel of the `handover run` this process runs under."""

    def __init__(self, fd=None):
        self._sock = channel_socket(fd)
        self._write = threading.Lock()
        self._tasks = collections.deque()
        self._wake = threading.Condition()
        self._handler = None
        self._running = False
        self._stopping = False
        self._hooks = []
        self._signals_taken = False
        self._closed = threading.Event()
        super().__init__(self._queue_task, threading.RLock())
        threading.Thread(target=self._read, name="handover-channel", daemon=True).start()

    # What the service says.
    def ready(self):
        """The service is ready: READY=1 on $NOTIFY_SOCKET, and on the channel."""
        notify_ready()
        self._send(line(cmd="ready"))

    def publish_state(self, state):
        """While active, carry `state` (up to 64 bytes) on the heartbeats."""
        self._send(state_line(state))

    publishState = publish_state

    def checkpoint(self, id):
        """While active and without `--queue`: record progress `id`."""
        self._send(line(cmd="checkpoint", id=task_id(id)))

    def submit(self, id, payload=None):
        """Queue a task (`handover run --queue`), on every instance, in id order."""
        self._send(line(cmd="submit", id=task_id(id), payload=payload))

    def process(self, handler):
        """Runs the queue's tasks while this instance is active, one at a time, on
        a thread: `handler(payload, id)` returns True when the task is done, False
        (or raises) to run it again. A stop signal lets the running task finish."""
        self._handler = handler
        self._take_signals()
        threading.Thread(target=self._work, name="handover-tasks", daemon=True).start()

    def on_shutdown(self, hook):
        """Runs `hook` when `handover` stops this service, after the running task;
        then exits 0. Usable as a decorator."""
        self._hooks.append(hook)
        self._take_signals()
        return hook

    onShutdown = on_shutdown

    def leave(self):
        """Leave the group now (a standby takes over), as on SIGTERM."""
        self._send(line(cmd="leave"))

    def watchdog(self):
        """The service is alive (`handover run --watchdog`, as systemd's
        WATCHDOG=1): call it from the code whose progress matters at least every
        half of $WATCHDOG_USEC; a longer silence fails the service over."""
        self._send(line(cmd="watchdog"))

    def wait(self, timeout=None):
        """Blocks until the channel closes."""
        return self._closed.wait(timeout)

    # The threads.
    def _send(self, data):
        with self._write:
            try:
                self._sock.sendall(data)
            except OSError as e:
                self._warn("the channel: %s" % e)

    def _read(self):
        with self._sock.makefile("r", encoding="utf-8", newline="\n") as lines:
            try:
                for text in lines:
                    self._feed(text)
            except (OSError, ValueError):
                pass
        self._closed.set()
        self._emit("close")

    def _queue_task(self, id, payload):
        with self._wake:
            self._tasks.append((id, payload))
            self._wake.notify_all()

    def _work(self):
        while True:
            with self._wake:
                while self._stopping or not self._tasks:
                    self._wake.wait()
                id, payload = self._tasks.popleft()
                self._running = True
            done = False
            try:
                done = bool(self._handler(payload, id))
            except BaseException as e:
                # SystemExit and the like too: the task did not finish, and the
                # worker goes on, so that a stop is never left waiting for it.
                self._warn("task %d: %r" % (id, e))
            self._send(line(cmd="done" if done else "retry", id=id))
            with self._wake:
                self._running = False
                self._wake.notify_all()

    def _take_signals(self):
        if self._signals_taken:
            return
        self._signals_taken = True
        # The handler only records the signal: it runs on the main thread between
        # two of its bytecodes, maybe while that thread holds a lock the stop
        # needs (the channel's, in the middle of a submit). The stop runs on a
        # thread of its own, woken through a pipe.
        wake_r, wake_w = os.pipe()
        threading.Thread(target=self._stop_on_signal, args=(wake_r,),
                         name="handover-stop", daemon=True).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: os.write(wake_w, b"."))

    def _stop_on_signal(self, wake_r):
        os.read(wake_r, 1)
        self._stop()

    def _stop(self):
        with self._wake:
            self._stopping = True
            while self._running:
                self._wake.wait()
        for hook in self._hooks:
            try:
                hook()
            except Exception as e:
                self._warn("shutdown hook: %r" % (e,))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def connect(fd=None):
    """Connects to the channel of the `handover run` this process runs under."""
    return Handover(fd)
