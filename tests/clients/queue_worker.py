"""A service of the client tests: submits TASKS tasks on every instance, runs them
while active (each one a line "<id> <pid> <monotonic ns>" appended to RUNLOG, then TASK_MS of
work), and writes its role to ROLEFILE as it changes. With --aio, on asyncio.

    python3 queue_worker.py RUNLOG ROLEFILE [--aio]
"""

import asyncio
import os
import sys
import time

runlog, rolefile = sys.argv[1], sys.argv[2]
tasks = int(os.environ.get("TASKS", "2000"))
task_s = int(os.environ.get("TASK_MS", "5")) / 1000


def record(payload, id):
    if payload != {"n": id}:
        raise ValueError("task %d carries %r" % (id, payload))
    with open(runlog, "a") as f:
        f.write("%d %d %d\n" % (id, os.getpid(), time.monotonic_ns()))


def write_role(role, _leader):
    with open(rolefile, "w") as f:
        f.write(role)


def threaded():
    import handover_client

    h = handover_client.connect()
    h.on("hello", lambda _: [h.submit(id, {"n": id}) for id in range(1, tasks + 1)])
    h.on("role", write_role)

    def run(payload, id):
        record(payload, id)
        time.sleep(task_s)
        return True

    h.process(run)
    h.wait()


async def with_asyncio():
    from handover_client import aio

    h = await aio.connect()
    h.on("hello", lambda _: asyncio.ensure_future(submit_all(h)))
    h.on("role", write_role)

    async def run(payload, id):
        record(payload, id)
        await asyncio.sleep(task_s)
        return True

    await h.process(run)


async def submit_all(h):
    for id in range(1, tasks + 1):
        await h.submit(id, {"n": id})


if "--aio" in sys.argv:
    asyncio.run(with_asyncio())
else:
    threaded()
