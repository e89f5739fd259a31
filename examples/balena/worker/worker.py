"""A background worker run by `handover run`.

It says it is ready with READY=1 on $NOTIFY_SOCKET (systemd's sd_notify protocol,
which handover speaks), reports progress with STATUS=, and on SIGTERM, sent once a
newer container is ready, finishes the job in hand and exits.
"""

import os
import signal
import socket
import time


def notify(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.sendall(message.encode())


stopping = False


def stop(signum, frame):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)

notify("READY=1")
print("ready", flush=True)
jobs = 0
while not stopping:
    time.sleep(0.1)  # one job
    jobs += 1
    notify(f"STATUS={jobs} jobs done")
print(f"superseded after {jobs} jobs", flush=True)
