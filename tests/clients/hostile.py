"""A hostile service of the client tests, on the raw channel: bad lines first
(answered one by one), then a flood of submits while it reads nothing, then it
reads what is there into OUT.

    python3 hostile.py OUT
"""

import json
import os
import socket
import sys
import time

out = sys.argv[1]
s = socket.socket(fileno=int(os.environ["HANDOVER_EVENTS_FD"]))
reader = s.makefile("rb")


def answer():
    while True:
        line = json.loads(reader.readline())
        if line["event"] == "error":
            return line["error"]


assert json.loads(reader.readline())["event"] == "hello"
errors = []
for bad in [b"x" * 100_000, b"{not json", b'{"cmd":"launch"}', b'{"cmd":"done","id":-1}',
            b'{"cmd":"done","id":5}', b'{"cmd":"submit","id":1,"payload":"' + b"y" * 17_000 + b'"}']:
    s.sendall(bad + b"\n")
    errors.append(answer())
with open(out + ".errors", "w") as f:
    json.dump(errors, f)

# The flood: far more submits than the queue holds, and nothing read meanwhile.
batch = b"".join(json.dumps({"cmd": "submit", "id": i, "payload": i}).encode() + b"\n"
                 for i in range(1, 200_001))
s.sendall(batch)
open(out + ".flooded", "w").close()
time.sleep(2)

s.settimeout(0.5)
data = b""
try:
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
with open(out, "wb") as f:
    f.write(data)
time.sleep(3600)
