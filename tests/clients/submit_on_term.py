"""A service of the client tests, on the threaded Python client: its main thread
submits without pause (the same thousand tasks again and again, so the queue never
fills), tasks take TASK_MS each, and its shutdown hook writes HOOKFILE. A stop
signal arrives, most likely, in the middle of a submit.

    python3 submit_on_term.py RUNLOG HOOKFILE
"""

import os
import sys
import time

import handover_client

runlog, hookfile = sys.argv[1], sys.argv[2]
task_s = int(os.environ.get("TASK_MS", "20")) / 1000
payload = "p" * 8000

h = handover_client.connect()


def run(_payload, id):
    time.sleep(task_s)
    with open(runlog, "a") as f:
        f.write("%d\n" % id)
    return True


@h.on_shutdown
def hook():
    with open(hookfile, "w") as f:
        f.write("ran")


h.process(run)
while True:
    for id in range(1, 1001):
        h.submit(id, payload)
