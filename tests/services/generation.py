#!/usr/bin/env python3
"""An HTTP service written for systemd socket activation, as services are: it
serves on the socket named "http" among those passed from descriptor 3
(LISTEN_FDS, LISTEN_FDNAMES, for LISTEN_PID), answers every request with its
generation after a random 0-20 ms delay ($SERVICE_DELAY_MS sets the
longest), says READY=1 on $NOTIFY_SOCKET, and on
SIGTERM stops accepting and finishes the requests it has accepted.

    generation.py GENERATION
    generation.py GENERATION --reuseport PORT

The second form binds 127.0.0.1:PORT itself with SO_REUSEPORT instead, as
services that rebind on upgrade do.
"""
import os
import random
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if sys.argv[2:3] == ["--reuseport"]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", int(sys.argv[3])))
    listener.listen(1024)
else:
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.exit("LISTEN_PID is not this process: the sockets are not for us")
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    if len(names) != int(os.environ["LISTEN_FDS"]):
        sys.exit("LISTEN_FDNAMES does not name every descriptor")
    listener = socket.socket(fileno=3 + names.index("http"))
# Other processes accept from the same queue: never block in accept.
listener.setblocking(False)
generation = sys.argv[1].encode()
# The longest delay before an answer ($SERVICE_DELAY_MS, default 20 ms).
DELAY = float(os.environ.get("SERVICE_DELAY_MS", "20")) / 1000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    # A client that never sends its request must not hold the shutdown forever.
    timeout = 5

    def do_GET(self):
        time.sleep(random.uniform(0, DELAY))
        body = b"generation " + generation + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # server_close() waits for the requests in flight.
    daemon_threads = False

    def get_request(self):
        connection, address = self.socket.accept()
        connection.setblocking(True)
        return connection, address


server = Server(("", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = listener
# The handler only raises serve_forever's own flag (checked every poll interval):
# starting a thread from a signal handler can deadlock, if the signal lands while
# the main thread holds threading's locks (starting a request's thread).
def stop(*_):
    server._BaseServer__shutdown_request = True


signal.signal(signal.SIGTERM, stop)

notify = os.environ.get("NOTIFY_SOCKET")
if notify:
    address = "\0" + notify[1:] if notify.startswith("@") else notify
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", address)
server.serve_forever(poll_interval=0.05)
server.server_close()
