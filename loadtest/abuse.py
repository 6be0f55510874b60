#!/usr/bin/env python3
"""The scenarios of loadtest/abuse.sh against a running hookwire: idle
keep-alive connections, slowloris senders, a connect flood during a load
test, and slow readers. Beside each, a fresh client's GET latency (one
keep-alive connection, sequential GETs) against the unloaded baseline,
hookwire's RSS and descriptors (/proc/PID). Loopback only; every scenario
is bounded in time and count. Prints one JSON object per scenario line
(for abuse.sh's table) on stdout.

    abuse.py HTTP_PORT HOOKWIRE_PID [--idle N] [--slowloris N] [--flood N]
             [--slow-readers N] [--request-timeout S] [--idle-timeout S]
"""
import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("pid", type=int)
p.add_argument("--idle", type=int, default=10000)
p.add_argument("--slowloris", type=int, default=300)
p.add_argument("--flood", type=int, default=20000)
p.add_argument("--load", type=int, default=50000, help="requests of the load test")
p.add_argument("--slow-readers", type=int, default=50)
p.add_argument("--pipelined", type=int, default=1000)
p.add_argument("--request-timeout", type=float, default=5)
p.add_argument("--idle-timeout", type=float, default=5)
p.add_argument("--probes", type=int, default=2000)
a = p.parse_args()
addr = ("127.0.0.1", a.port)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss():
    with open(f"/proc/{a.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fds():
    return len(os.listdir(f"/proc/{a.pid}/fd"))


def probe(n=None, path="/abuse/probe"):
    """p50 and p99 (ms) of n sequential GETs on one fresh keep-alive connection."""
    n = n or a.probes
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    times = []
    buf = b""
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(req)
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buf[:head_end].decode("latin-1").lower()
                length = int(head.split("content-length:")[1].split("\r\n")[0])
                end = head_end + 4 + length
                if len(buf) >= end:
                    assert head.startswith("http/1.1 200"), head
                    buf = buf[end:]
                    break
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("probe connection closed")
            buf += chunk
        times.append((time.perf_counter() - t) * 1000)
    s.close()
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def report(name, p50, p99, **extra):
    print(json.dumps({"scenario": name, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                      "rss": rss(), "fds": fds(), **extra}), flush=True)


def get(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    return data


# --- baseline ---------------------------------------------------------------
time.sleep(0.5)
base_fds, base_rss = fds(), rss()
p50, p99 = probe()
report("baseline", p50, p99)

# --- idle keep-alive connections -------------------------------------------
conns = []
for i in range(a.idle):
    s = socket.create_connection(addr, timeout=10)
    if i % 100 == 0:
        # Some have sent a request and are idle between requests.
        get(s, f"/abuse/idle?i={i}")
    conns.append(s)
time.sleep(1)
held_rss = rss()
p50, p99 = probe()
report("idle", p50, p99, connections=a.idle,
       rss_per_conn=round((held_rss - base_rss) / a.idle))
for s in conns:
    s.close()
conns = []

# --- slowloris --------------------------------------------------------------
slow = []
line = b"GET /abuse/slowloris HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"x" * 200
for _ in range(a.slowloris):
    s = socket.create_connection(addr, timeout=10)
    s.setblocking(False)
    slow.append(s)
answers = {}
stop = threading.Event()


def dribble():
    sent = 0
    deadline = time.time() + a.request_timeout + 5
    while time.time() < deadline and len(answers) < len(slow):
        for s in slow:
            if s.fileno() in answers:
                continue
            try:
                data = s.recv(4096)
                answers[s.fileno()] = data.split(b"\r\n")[0].decode() if data else "closed"
                continue
            except BlockingIOError:
                pass
            except OSError:
                answers[s.fileno()] = "reset"
                continue
            try:
                s.send(line[sent:sent + 1])
            except OSError:
                answers[s.fileno()] = "reset"
        sent += 1
        time.sleep(1)
    stop.set()


t = threading.Thread(target=dribble)
t.start()
time.sleep(1.5)
p50, p99 = probe()
t.join()
got408 = sum(1 for v in answers.values() if v.startswith("HTTP/1.1 408"))
report("slowloris", p50, p99, senders=a.slowloris, got_408=got408,
       other=len(slow) - got408)
for s in slow:
    s.close()

# --- connect flood during a load test --------------------------------------
time.sleep(1)
before_fds = fds()
load = subprocess.Popen(["oha", "-n", str(a.load), "-c", "16", "--no-tui", "--output-format", "json",
                         f"http://127.0.0.1:{a.port}/abuse/load?x=1"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
flooded = 0
failed = 0
for _ in range(a.flood):
    try:
        s = socket.create_connection(addr, timeout=5)
        s.close()
        flooded += 1
    except OSError:
        failed += 1
    if flooded == a.flood // 2:
        mid = probe(500)
out, _ = load.communicate(timeout=300)
result = json.loads(out)
ok_200 = int(result.get("statusCodeDistribution", {}).get("200", 0))
time.sleep(2)
report("connect-flood", mid[0], mid[1], cycles=flooded, connect_errors=failed,
       load_200=ok_200, fds_before=before_fds, fds_after=fds())

# --- slow readers -------------------------------------------------------------
before_rss, before_fds = rss(), fds()
readers = []
for r in range(a.slow_readers):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(addr)
    s.setblocking(False)
    readers.append(s)
reqs = [b"".join(f"GET /abuse/slowread?r={r}&i={i} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
                 for i in range(a.pipelined)) for r in range(a.slow_readers)]
sent = [0] * a.slow_readers
deadline = time.time() + 2
while time.time() < deadline:
    for i, s in enumerate(readers):
        if sent[i] < len(reqs[i]):
            try:
                sent[i] += s.send(reqs[i][sent[i]:])
            except (BlockingIOError, OSError):
                pass
    time.sleep(0.01)
held_rss = rss()
p50, p99 = probe()
# Closed by the server once their writes stall for --idle-timeout: its
# descriptors return to what they were (the reader, whose window is full,
# may not see the FIN).
held_fds = fds()
started = time.time()
deadline = started + a.idle_timeout + 10
while time.time() < deadline and fds() > before_fds:
    time.sleep(0.2)
report("slow-readers", p50, p99, readers=a.slow_readers, pipelined=a.pipelined,
       rss_per_conn=round((held_rss - before_rss) / a.slow_readers),
       fds_held=held_fds, fds_after=fds(), closed_after_s=round(time.time() - started, 1))
for s in readers:
    s.close()
time.sleep(1)
print(json.dumps({"scenario": "end", "fds": fds(), "fds_baseline": base_fds, "rss": rss()}), flush=True)
