"""The channel's lines (version 1, the README's table), without IO: what both the
threaded and the asyncio client read and write."""

import json
import os
import socket

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
