"""A service of the client tests whose first task never finishes normally:

    python3 task_interrupted.py system-exit RUNLOG   # threads: task 1 raises SystemExit
    python3 task_interrupted.py cancel RUNLOG        # asyncio: process() cancelled in task 1, then run again

It submits TASKS tasks, appends each id it finishes to RUNLOG, and exits 0 once
the checkpoint covers every task (the interrupted task must have been answered
`retry`, or the queue stalls at window 1).
"""

import asyncio
import os
import sys

mode, runlog = sys.argv[1], sys.argv[2]
tasks = int(os.environ.get("TASKS", "3"))


def record(id):
    with open(runlog, "a") as f:
        f.write("%d\n" % id)


def threaded():
    import handover_client

    h = handover_client.connect()
    raised = []

    def run(_payload, id):
        if not raised:
            raised.append(id)
            raise SystemExit(3)
        record(id)
        return True

    h.on("checkpoint", lambda id: id == tasks and os._exit(0))
    h.process(run)
    for id in range(1, tasks + 1):
        h.submit(id)
    h.wait()


async def with_asyncio():
    from handover_client import aio

    h = await aio.connect()
    finished = asyncio.get_running_loop().create_future()
    h.on("checkpoint", lambda id: id == tasks and not finished.done() and finished.set_result(id))
    started = asyncio.Event()

    async def stuck(_payload, id):
        started.set()
        await asyncio.sleep(3600)

    async def run(_payload, id):
        record(id)
        return True

    for id in range(1, tasks + 1):
        await h.submit(id)
    first = asyncio.ensure_future(h.process(stuck))
    await started.wait()
    first.cancel()
    try:
        await first
    except asyncio.CancelledError:
        pass
    asyncio.ensure_future(h.process(run))
    await finished


if mode == "cancel":
    asyncio.run(with_asyncio())
else:
    threaded()
