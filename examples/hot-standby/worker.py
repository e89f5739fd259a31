#!/usr/bin/env python3
"""A hot standby under `handover run --mode failover --standby hot`: it runs on
every instance, works while active, and keeps the active's progress while standing
by, so that it resumes where the active was. In place of mongoose-failover's
unmanaged mode (`statechange`, `master`/`slave`).

    handover run --mode failover --standby hot -- python3 worker.py
"""
import json
import os
import socket
import threading
import time

channel = socket.socket(fileno=int(os.environ["HANDOVER_EVENTS_FD"]))
role, done = "standby", 0


def work():
    global done
    while True:
        time.sleep(0.1)
        if role == "active":
            done += 1  # one unit of work, then publish how far we are
            state = json.dumps({"state": done.to_bytes(8, "big").hex()})
            channel.sendall(state.encode() + b"\n")


threading.Thread(target=work, daemon=True).start()
for line in channel.makefile():
    event = json.loads(line)
    if event["event"] == "role" and event["role"] != role:
        role = event["role"]
        print(f"role {role} (leader {event['leader']}), resuming after {done}", flush=True)
    elif event["event"] == "state":
        done = int.from_bytes(bytes.fromhex(event["state"]), "big")
