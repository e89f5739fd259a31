"""A service of the client tests, on the raw channel: it submits TASKS tasks, and
answers `done` for task 1 only once the file GO exists (the test creates it while
its instance has lost its term); every other task at once. It exits 0 once the
checkpoint covers every task, 1 on an error line.

    python3 answer_late.py GO RUNLOG
"""

import json
import os
import socket
import sys
import time

go, runlog = sys.argv[1], sys.argv[2]
tasks = int(os.environ.get("TASKS", "3"))
s = socket.socket(fileno=int(os.environ["HANDOVER_EVENTS_FD"]))
reader = s.makefile("rb")
s.sendall(b"".join(json.dumps({"cmd": "submit", "id": i, "payload": i}).encode() + b"\n"
                   for i in range(1, tasks + 1)))
for text in reader:
    line = json.loads(text)
    if line["event"] == "run":
        with open(runlog, "a") as f:
            f.write("%d\n" % line["id"])
        if line["id"] == 1:
            while not os.path.exists(go):
                time.sleep(0.01)
        s.sendall(json.dumps({"cmd": "done", "id": line["id"]}).encode() + b"\n")
    elif line["event"] == "checkpoint" and line["id"] == tasks:
        sys.exit(0)
    elif line["event"] == "error":
        sys.exit("handover: %s" % line["error"])
