"""The service of the fault-injection harness's `handover run --queue` scenario, on
the threaded Python client: it submits CHAOS_QUEUE_TASKS tasks in batches over
the run, whose payloads are up to the channel's limit (each id's payload the same
on every instance), with the ones not yet done again, so that a stop signal
often arrives in the middle of a submit. Each task it runs is a line
"<id> <pid> <monotonic µs>" appended to CHAOS_QUEUE_RUNS, after a check that its
payload is the one submitted.
"""

import os
import sys
import time

import handover_client

runs = os.environ["CHAOS_QUEUE_RUNS"]
tasks = int(os.environ.get("CHAOS_QUEUE_TASKS", "1000"))
task_s = int(os.environ.get("CHAOS_QUEUE_TASK_MS", "2")) / 1000
LIMIT = 16 * 1024


def payload(id):
    # From a few bytes to the limit (as JSON: the quotes count), the same for an id
    # on every instance.
    size = (id * 2654435761) % (LIMIT - 2) if id % 7 else LIMIT - 2
    head = "%d:" % id
    return head + "q" * max(0, size - len(head))


h = handover_client.connect()
done = [0]
h.on("checkpoint", lambda id: done.__setitem__(0, id))


def run(got, id):
    if got != payload(id):
        print("task %d carries another payload (%d bytes)" % (id, len(got)), file=sys.stderr)
        return False
    with open(runs, "a") as f:
        f.write("%d %d %d\n" % (id, os.getpid(), time.monotonic_ns() // 1000))
    time.sleep(task_s)
    return True


h.process(run)
# A producer: the next BATCH ids every PERIOD from CHAOS_QUEUE_EPOCH_US on (the
# same ids at the same time on every instance), each batch a burst of tasks for
# the active service; what is not done yet is submitted again with it.
epoch = int(os.environ["CHAOS_QUEUE_EPOCH_US"])
BATCH, PERIOD = 40, 0.5
while True:
    now = time.monotonic_ns() // 1000
    due = min(tasks, (int((now - epoch) / (PERIOD * 1e6)) + 1) * BATCH)
    for id in range(done[0] + 1, due + 1):
        h.submit(id, payload(id))
    time.sleep(PERIOD)
