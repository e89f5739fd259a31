"""The channel's lines (version 1, the README's table), without IO: what both the
threaded and the asyncio client read and write."""

import collections
import contextlib
import json
import os
import socket
import sys

#: The channel version this client speaks.
CHANNEL_VERSION = 1
#: The longest state the protocol carries, in bytes.
MAX_STATE = 64
#: mongoose-failover's names for the roles.
MONGOOSE = {"active": "master", "standby": "slave"}


def channel_socket(fd=None):
    """The channel's socket: the descriptor `handover run` passes in
    $HANDOVER_EVENTS_FD."""
    if fd is None:
        fd = os.environ.get("HANDOVER_EVENTS_FD")
    if fd in (None, ""):
        raise RuntimeError(
            "HANDOVER_EVENTS_FD is not set: start this service with `handover run -- ...`"
        )
    return socket.socket(fileno=int(fd))


def line(**fields):
    return (json.dumps(fields, separators=(",", ":")) + "\n").encode()


def task_id(id):
    if isinstance(id, bool) or not isinstance(id, int) or id < 0:
        raise ValueError("task id %r: a whole number from 0" % (id,))
    return id


def state_line(state):
    if isinstance(state, str):
        state = state.encode()
    state = bytes(state)
    if len(state) > MAX_STATE:
        raise ValueError("publish_state: %d bytes (at most %d)" % (len(state), MAX_STATE))
    return line(cmd="state", state=state.hex())


def notify_ready():
    """READY=1 on $NOTIFY_SOCKET, systemd's way, when there is one."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", path)


#: Events that say what is true now: a callback registered after one was
#: emitted is called at once with it (see `Reader.sticky`).
STICKY = ("hello", "role", "leader", "state", "checkpoint", "synchronize",
          "active", "standby", "master", "slave", "statechange")


class Reader:
    """Turns `handover`'s lines into events: `emit(name, *args)` for each, and
    `run(id, payload)` for each task."""

    def __init__(self, emit, run, warn):
        self._emit, self.run, self.warn = emit, run, warn
        #: The last arguments of each event of STICKY still true, for callbacks
        #: registered late (the channel is read from the moment it connects).
        self.sticky = {}
        self.id = None
        self.queue = None
        self.role = None
        self.leader = None
        self.checkpoint = 0

    def emit(self, event, *args):
        if event in STICKY:
            self.sticky[event] = args
        self._emit(event, *args)

    def feed(self, text):
        try:
            event = json.loads(text)
        except ValueError:
            return self.warn("not JSON from handover: %r" % text[:80])
        kind = event.get("event")
        if kind == "hello":
            self.id, self.queue = event.get("id"), event.get("queue")
            if event.get("channel", 0) > CHANNEL_VERSION:
                self.warn("channel version %s; this client speaks %d" % (event["channel"], CHANNEL_VERSION))
            self.emit("hello", event)
        elif kind == "role":
            self._role(event.get("role"), event.get("leader"))
        elif kind == "state":
            self.emit("state", bytes.fromhex(event.get("state") or ""))
        elif kind == "checkpoint":
            self.checkpoint = event["id"]
            self.emit("checkpoint", event["id"])
            self.emit("synchronize", event["id"])
        elif kind == "checkpoint_held":
            self.emit("checkpoint_held", event["id"])
        elif kind == "run":
            self.run(event["id"], event.get("payload"))
        elif kind == "error":
            self.warn("handover: %s%s" % (event.get("error"), " (%s)" % event["line"] if event.get("line") else ""))
        # Anything else is a newer handover's line: nothing to do with it.

    def _role(self, role, leader):
        before = self.role
        self.role = role
        if leader != self.leader:
            self.leader = leader
            self.emit("leader", leader)
        if role == before:
            return
        if before:
            self.sticky.pop(before, None)
            self.sticky.pop(MONGOOSE[before], None)
        self.emit("role", role, leader)
        self.emit(role, leader)
        self.emit(MONGOOSE[role], leader)
        self.emit("statechange", MONGOOSE.get(before), MONGOOSE[role])


class Events:
    """What both clients share: the events and their callbacks, and what
    `handover` has said. `run(id, payload)` takes each task; `lock` is held while
    an event is delivered or a callback registered."""

    def __init__(self, run, lock=None):
        self._callbacks = collections.defaultdict(list)
        self._events = lock if lock is not None else contextlib.nullcontext()
        self._reader = Reader(self._emit, run, self._warn)

    @property
    def id(self):
        return self._reader.id

    @property
    def role(self):
        return self._reader.role

    @property
    def leader(self):
        return self._reader.leader

    @property
    def checkpoint_id(self):
        return self._reader.checkpoint

    def on(self, event, callback=None):
        """Calls `callback` on `event` (`active`, `standby`, `leader`, `state`,
        `role`, `checkpoint`, `checkpoint_held`, `hello`, `error`, `close`, and
        mongoose-failover's `master`, `slave`, `statechange`, `synchronize`).
        Events that say what is true now (the hello, the role, the state, the
        checkpoint) are replayed to a callback registered after them. Usable as a
        decorator."""
        if callback is None:
            return lambda f: self.on(event, f)
        # Under the lock: an event is either replayed here or delivered later,
        # never both, never neither.
        with self._events:
            self._callbacks[event].append(callback)
            now = self._reader.sticky.get(event)
            if now is not None:
                callback(*now)
        return callback

    def _feed(self, text):
        with self._events:
            self._reader.feed(text)

    def _emit(self, event, *args):
        for callback in list(self._callbacks.get(event, ())):
            try:
                callback(*args)
            except Exception as e:  # a callback's failure is the service's own
                self._warn("%s callback: %r" % (event, e))

    def _warn(self, message):
        if self._callbacks.get("error"):
            self._emit("error", message)
        else:
            print("handover: %s" % message, file=sys.stderr, flush=True)
