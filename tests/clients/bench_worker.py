"""The throughput benchmark's service, on asyncio: submits TASKS no-op tasks
(after SUBMIT_AFTER_MS), each with a payload of PAYLOAD bytes of JSON (none if 0),
runs them while active, and once it has run the last writes to OUT how long the
tasks took from the first.

    python3 bench_worker.py OUT
"""

import asyncio
import json
import os
import sys
import time

from handover_client import aio

out = sys.argv[1]
tasks = int(os.environ["TASKS"])


async def main():
    h = await aio.connect()
    first = None

    async def submit_all():
        # Once the instances have settled who is active.
        await asyncio.sleep(int(os.environ.get("SUBMIT_AFTER_MS", "0")) / 1000)
        size = int(os.environ.get("PAYLOAD", "0"))
        for id in range(1, tasks + 1):
            # A JSON string of `size` bytes, quotes included (or none).
            await h.submit(id, "x" * (size - 2) if size >= 2 else None)

    asyncio.ensure_future(submit_all())

    def run(_payload, id):
        nonlocal first
        if first is None:
            first = time.monotonic()
        if id == tasks:
            with open(out, "w") as f:
                json.dump({"tasks": tasks, "seconds": time.monotonic() - first}, f)
        return True

    await h.process(run)


asyncio.run(main())
