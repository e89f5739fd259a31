"""A service of the client tests that reads its channel slowly, on the raw channel:
it submits TASKS tasks whose payloads are PAYLOAD bytes of JSON, then reads at most
CHUNK bytes every PAUSE_MS, answers `done` for each `run` (appending its id to
RUNLOG), and exits once the checkpoint covers every task.

    python3 slow_reader.py RUNLOG
"""

import json
import os
import socket
import sys
import time

runlog = sys.argv[1]
tasks = int(os.environ.get("TASKS", "40"))
size = int(os.environ.get("PAYLOAD", "12000"))
chunk = int(os.environ.get("CHUNK", "4096"))
pause = int(os.environ.get("PAUSE_MS", "10")) / 1000

s = socket.socket(fileno=int(os.environ["HANDOVER_EVENTS_FD"]))


def payload(id):
    # A JSON string of exactly `size` bytes, quotes included, that names its task.
    head = "%d:" % id
    return head + "p" * (size - 2 - len(head))


s.sendall(b"".join(
    json.dumps({"cmd": "submit", "id": id, "payload": payload(id)}).encode() + b"\n"
    for id in range(1, tasks + 1)))

buffered = b""
while True:
    data = s.recv(chunk)
    if not data:
        sys.exit("the channel closed")
    buffered += data
    *lines, buffered = buffered.split(b"\n")
    for text in lines:
        line = json.loads(text)
        if line["event"] == "run":
            if line["payload"] != payload(line["id"]):
                sys.exit("task %d carries another payload" % line["id"])
            with open(runlog, "a") as f:
                f.write("%d\n" % line["id"])
            s.sendall(json.dumps({"cmd": "done", "id": line["id"]}).encode() + b"\n")
        elif line["event"] == "checkpoint" and line["id"] == tasks:
            sys.exit(0)
        elif line["event"] == "error":
            sys.exit("handover: %s" % line["error"])
    time.sleep(pause)
