#!/usr/bin/env python3
"""Idle-connection flood against a running `ivan serve` on loopback (issue 17, item 1).

Opens up to N idle TCP connections from 127.0.0.2 (another client address than the
check's), never sending a byte, then asks /healthz from 127.0.0.1 with a 1 s limit, and
counts how many flood connections the server still holds open. Bounded: N attempts,
each with a 0.2 s connect timeout; closes everything at the end. Loopback only.

    ivan serve --listen 127.0.0.1:18181 &
    python3 ops/load/idle-flood.py 18181 19500
"""
import resource
import socket
import subprocess
import sys
import time

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
attempts = int(sys.argv[2]) if len(sys.argv) > 2 else 19500
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

socks, failed = [], 0
started = time.time()
for _ in range(attempts):
    s = socket.socket()
    s.settimeout(0.2)
    try:
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    except OSError:
        failed += 1
        s.close()
print(f"{attempts} idle connections attempted in {time.time() - started:.1f} s: "
      f"{len(socks)} connected, {failed} refused or timed out")
for _ in range(3):
    r = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-m", "1", "-w", "%{http_code} in %{time_total} s",
         f"http://127.0.0.1:{port}/healthz"],
        capture_output=True, text=True)
    print("/healthz from another address:", r.stdout or "no answer within 1 s")
still_open = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1) != b"":
            still_open += 1
    except BlockingIOError:
        still_open += 1
    except OSError:
        pass
    s.close()
print(f"flood connections the server still holds: {still_open}")
