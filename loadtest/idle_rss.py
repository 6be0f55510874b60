#!/usr/bin/env python3
"""Memory per idle keep-alive connection: opens N connections to a running
server, each sends one GET postback and reads its answer, then stays open
and idle; prints the server's VmRSS (/proc/PID/status) before and after,
and the difference per connection.

    loadtest/idle_rss.py --pid PID --port PORT [-n 10000]

Loopback only; the connections close when it exits.
"""
import argparse
import resource
import selectors
import socket
import time


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--path", default="/affise/conversion/7?clickid=abc&payout=1.5&status=1")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, a.n + 100)), hard))
    req = f"GET {a.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    # Warm the server (its first connections grow its pools) before the
    # baseline.
    warm = [socket.create_connection(("127.0.0.1", a.port)) for _ in range(64)]
    for s in warm:
        s.sendall(req)
        s.recv(4096)
    for s in warm:
        s.close()
    time.sleep(0.5)
    before = rss_kib(a.pid)
    conns = []
    sel = selectors.DefaultSelector()
    for i in range(a.n):
        s = socket.create_connection(("127.0.0.1", a.port))
        s.sendall(req)
        conns.append(s)
        if len(conns) % 500 == 0:
            for c in conns[-500:]:
                c.recv(4096)
    for c in conns[len(conns) - len(conns) % 500:]:
        c.recv(4096)
    time.sleep(1.0)
    after = rss_kib(a.pid)
    per = (after - before) / a.n
    print(f"{a.n} idle keep-alive connections: VmRSS {before} -> {after} KiB, {per:.2f} KiB per connection")
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
