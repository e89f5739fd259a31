#!/usr/bin/env python3
"""The service of the fault-injection harness: it works (a tick every 20 ms) and
writes what it does to a ledger shared by every instance, on the monotonic
clock, so that the harness can tell whether two services of a scope ever worked
at once. Its behaviour comes from the environment, as the harness draws it:

    CHAOS_LEDGER      the ledger (lines "T_US NAME PID what [role]", appended)
    CHAOS_NAME        this instance's name in the ledger
    CHAOS_READY_MS    delay before READY=1 on $NOTIFY_SOCKET (-1: never ready)
    CHAOS_EXIT_MS     exit on its own after this long, with CHAOS_EXIT_CODE
    CHAOS_TERM_CODE   exit status on SIGTERM (a JVM's 143, a handler's 1 or 130)
    CHAOS_TERM_IGNORE 1: ignore SIGTERM (killed after --stop-timeout)
    CHAOS_NOISE       bytes written to stderr at start (fills a log pipe)

It leaves an orphan behind at start, for its supervisor to reap. With
--standby hot it reads its role from $HANDOVER_EVENTS_FD and ticks with it.
Threads work while the main thread waits, as in the services users run.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

env = os.environ
ledger = os.open(env["CHAOS_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
name = env.get("CHAOS_NAME", "?")
pid = os.getpid()
role = "active"


def now_us():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def note(what):
    os.write(ledger, f"{now_us()} {name} {pid} {what}\n".encode())


stopping = threading.Event()


def on_term(*_):
    if env.get("CHAOS_TERM_IGNORE") == "1":
        note("term-ignored")
        return
    stopping.set()


signal.signal(signal.SIGTERM, on_term)

events_fd = env.get("HANDOVER_EVENTS_FD")
if events_fd:
    role = "standby"

    def follow():
        global role
        with os.fdopen(int(events_fd), "r") as events:
            for line in events:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "role":
                    role = event["role"]
                    note(f"role {role}")

    threading.Thread(target=follow, daemon=True).start()

note("start")
# An orphan, as services leave them (a daemonizing helper): `handover` must reap it.
subprocess.run(["sh", "-c", "sleep 0.3 &"])
noise = int(env.get("CHAOS_NOISE", "0"))
if noise:
    # Written by a thread: the pipe may be full and stay so.
    threading.Thread(
        target=lambda: os.write(2, b"x" * noise), daemon=True
    ).start()


def watchdog():
    """WATCHDOG=1 every 100 ms when `handover run --watchdog` asks for it."""
    notify = env.get("NOTIFY_SOCKET")
    if not notify or not env.get("WATCHDOG_USEC"):
        return lambda: None
    address = "\0" + notify[1:] if notify.startswith("@") else notify
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    last = [0.0]

    def ping():
        now = time.monotonic()
        if now - last[0] >= 0.1:
            last[0] = now
            try:
                s.sendto(b"WATCHDOG=1", address)
            except OSError:
                pass

    return ping


def work():
    ping = watchdog()
    while not stopping.is_set():
        note(f"tick {role}")
        ping()
        time.sleep(0.02)


worker = threading.Thread(target=work)
worker.start()

ready_ms = int(env.get("CHAOS_READY_MS", "0"))
if ready_ms >= 0:
    time.sleep(ready_ms / 1000)
    notify = env.get("NOTIFY_SOCKET")
    if notify:
        address = "\0" + notify[1:] if notify.startswith("@") else notify
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", address)
    note("ready")

exit_ms = env.get("CHAOS_EXIT_MS")
deadline = time.monotonic() + int(exit_ms) / 1000 if exit_ms else None
while not stopping.is_set():
    if deadline is not None and time.monotonic() >= deadline:
        stopping.set()
        worker.join()
        code = int(env.get("CHAOS_EXIT_CODE", "1"))
        note(f"exit {code}")
        os._exit(code)
    stopping.wait(0.01)
worker.join()
code = int(env.get("CHAOS_TERM_CODE", "0"))
note(f"stop {code}")
os._exit(code)
