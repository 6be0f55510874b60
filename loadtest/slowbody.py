#!/usr/bin/env python3
"""Slow-body load: many senders announce a large body, send most of it and
stall. Measures hookwire's RSS against --max-inflight-body, and what a
fresh client's GET costs meanwhile.

    loadtest/slowbody.py [--conns 1500] [--hookwire-args "--max-inflight-body 64MiB"]

Starts the release binary (target/release/hookwire, or --bin) and the
checking sink (target/release/examples/sink, or --sink; build both with
`cargo build --release --bin hookwire --example sink`) on loopback ports
that must be free, then:

1. unloaded: fresh-connection GETs for --probe-seconds, latency p50/p99;
2. loaded: --conns connections each send a head with `Content-Length:
   1000000` and --send bytes of the body, then stall; hookwire's RSS is
   sampled from /proc/PID/status while fresh-connection GETs run again;
3. the stalled connections are closed, hookwire is stopped (SIGTERM, it
   drains), then the sink, whose count must equal the GETs' 200s.

Everything is bounded in time (about 25 s with the defaults) and every
process it starts is stopped by its PID. Exits 1 if an event that got a
200 did not reach the sink. Standard library only.
"""

import argparse
import json
import multiprocessing as mp
import os
import resource
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

ANNOUNCED = 1_000_000


def args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    p.add_argument("--bin", default=os.path.join(target, "release/hookwire"))
    p.add_argument("--sink", default=os.path.join(target, "release/examples/sink"))
    p.add_argument("--conns", type=int, default=1500)
    p.add_argument("--send", type=int, default=940_000, help="body bytes each sends")
    p.add_argument("--port", type=int, default=28080, help="HTTP; admin +1, ZeroMQ +2")
    p.add_argument("--cores", type=int, default=0, help="0: hookwire's default")
    p.add_argument("--probe-seconds", type=float, default=3.0)
    p.add_argument("--stall-seconds", type=float, default=8.0)
    p.add_argument("--hookwire-args", default="", help="more options, one string")
    a = p.parse_args()
    if not 1 <= a.conns <= 20_000 or not 0 < a.send < ANNOUNCED:
        p.error("--conns 1-20000, --send below the announced 1000000")
    if a.probe_seconds > 10 or a.stall_seconds > 15:
        p.error("--probe-seconds at most 10, --stall-seconds at most 15")
    return a


def port_free(port):
    """Nothing listens on 127.0.0.1:port (connections of an earlier run
    in TIME_WAIT do not count, as for hookwire's own bind)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def probe(port, seconds, out):
    """Fresh-connection GETs for `seconds`: (latencies in ms, 200s, others)."""
    lat, ok, other = [], 0, 0
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        req = f"GET /loadtest/slowbody?n={n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        t = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(req.encode())
                raw = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
        except OSError:
            other += 1
            continue
        lat.append((time.perf_counter() - t) * 1000)
        if raw.startswith(b"HTTP/1.1 200 "):
            ok += 1
        else:
            other += 1
        time.sleep(0.002)
    out.put((lat, ok, other))


def stall(port, conns, send, seconds, ready, report):
    """Opens `conns` connections, each sends a head announcing ANNOUNCED
    bytes and `send` of them, then stalls; closes all after `seconds`."""
    try:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    except (ValueError, OSError):
        pass
    head = (
        "POST /loadtest/stalled HTTP/1.1\r\nHost: t\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {ANNOUNCED}\r\n\r\n"
    ).encode()
    payload = memoryview(head + b"v=" + b"a" * (send - 2))
    sel = selectors.DefaultSelector()
    socks, left, failed = [], {}, 0
    end = time.monotonic() + seconds
    for _ in range(conns):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            failed += 1
            continue
        s.setblocking(False)
        socks.append(s)
        left[s] = 0
        sel.register(s, selectors.EVENT_WRITE)
    ready.set()
    while left and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            at = left[s]
            try:
                at += s.send(payload[at:at + 262144])
            except BlockingIOError:
                continue
            except OSError:
                at = len(payload)
            if at >= len(payload):
                del left[s]
                sel.unregister(s)
            else:
                left[s] = at
    sent_all = len(socks) - len(left)
    remaining = end - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    for s in socks:
        s.close()
    report.put((len(socks), failed, sent_all))


def main():
    a = args()
    http, admin, zmq = a.port, a.port + 1, a.port + 2
    for p in (http, admin, zmq):
        if not port_free(p):
            sys.exit(f"127.0.0.1:{p} is in use: pick another --port")
    for path in (a.bin, a.sink):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} not found: cargo build --release --bin hookwire --example sink")
    work = tempfile.mkdtemp(prefix="hookwire-slowbody.")
    procs = []

    def stop(proc, sig=signal.SIGTERM, wait=15):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    try:
        sink_out = open(os.path.join(work, "sink.json"), "w")
        sink = subprocess.Popen(
            [a.sink, "--bind", f"tcp://127.0.0.1:{zmq}", "--max-seconds", "120"],
            stdout=sink_out, stderr=subprocess.DEVNULL)
        procs.append(sink)
        cmd = [a.bin, "serve", "--listen", f"127.0.0.1:{http}",
               "--admin", f"127.0.0.1:{admin}", "--push", f"tcp://127.0.0.1:{zmq}",
               "--spool-dir", os.path.join(work, "spool")]
        if a.cores:
            cmd += ["--cores", str(a.cores)]
        cmd += shlex.split(a.hookwire_args)
        err = open(os.path.join(work, "hookwire.err"), "w+")
        hw = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        procs.append(hw)
        for _ in range(300):
            err.seek(0)
            if "ready\n" in err.read() or hw.poll() is not None:
                break
            time.sleep(0.05)
        err.seek(0)
        banner = err.read()
        if "ready\n" not in banner:
            sys.exit(f"hookwire did not start:\n{banner}")
        stats = f"http://127.0.0.1:{admin}/stats"
        print(f"hookwire {' '.join(cmd[1:])}")

        q = mp.Queue()
        # 1. Unloaded.
        rss_idle = rss_kib(hw.pid)
        p = mp.Process(target=probe, args=(http, a.probe_seconds, q))
        p.start()
        idle_lat, idle_ok, idle_other = q.get(timeout=a.probe_seconds + 30)
        p.join()

        # 2. Loaded: the stalled senders, RSS samples and the probe.
        ready, report = mp.Event(), mp.Queue()
        stall_for = a.stall_seconds
        attacker = mp.Process(target=stall,
                              args=(http, a.conns, a.send, stall_for, ready, report))
        started = time.monotonic()
        attacker.start()
        ready.wait(30)
        p = mp.Process(target=probe, args=(http, min(a.probe_seconds, stall_for - 1), q))
        p.start()
        peak = 0
        while attacker.is_alive() and time.monotonic() - started < stall_for + 30:
            peak = max(peak, rss_kib(hw.pid))
            time.sleep(0.02)
        opened, failed, sent_all = report.get(timeout=30)
        attacker.join()
        load_lat, load_ok, load_other = q.get(timeout=30)
        p.join()
        hwm = rss_kib(hw.pid, "VmHWM")
        try:
            import urllib.request
            with urllib.request.urlopen(stats, timeout=5) as r:
                body = json.load(r)["merged"].get("inflight_body")
        except Exception:
            body = None

        # 3. Drain and count.
        stop(hw, wait=30)
        stop(sink, wait=30)
        sink_out.close()
        with open(os.path.join(work, "sink.json")) as f:
            tally = json.loads(f.read().strip().splitlines()[-1])

        hw_args = shlex.split(a.hookwire_args)
        help_text = subprocess.run([a.bin, "serve", "--help"], capture_output=True,
                                   text=True, check=False).stdout
        bound_text = "256MiB (the default)"
        if "--max-inflight-body" not in help_text:
            bound_text = "none (this hookwire has no such option)"
        if "--max-inflight-body" in hw_args[:-1]:
            bound_text = hw_args[hw_args.index("--max-inflight-body") + 1]
        mib = lambda kib: kib / 1024
        print(f"stalled senders: {opened} connected ({failed} failed), "
              f"{sent_all} sent all {a.send} bytes within {stall_for:.0f} s")
        print(f"RSS: idle {mib(rss_idle):.0f} MiB, peak {mib(max(peak, hwm)):.0f} MiB "
              f"(sampled {mib(peak):.0f}, VmHWM {mib(hwm):.0f}); --max-inflight-body {bound_text}")
        if body is not None:
            print(f"inflight_body after the load: {json.dumps(body)}")
        else:
            print("inflight_body: not reported (a hookwire without --max-inflight-body)")
        print(f"fresh GET, unloaded: {len(idle_lat)} requests, p50 {percentile(idle_lat, 0.5):.2f} ms, "
              f"p99 {percentile(idle_lat, 0.99):.2f} ms, {idle_other} not 200")
        print(f"fresh GET, loaded:   {len(load_lat)} requests, p50 {percentile(load_lat, 0.5):.2f} ms, "
              f"p99 {percentile(load_lat, 0.99):.2f} ms, {load_other} not 200")
        oks = idle_ok + load_ok
        print(f"sink: {tally['received']} received, {tally['unique']} unique, "
              f"{tally['invalid']} invalid; 200s sent: {oks}")
        if tally["unique"] != oks or tally["received"] != oks or tally["invalid"]:
            print("FAIL: the sink's count differs from the 200s")
            return 1
        print("ok: every 200 reached the sink once")
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc, signal.SIGKILL, 5)
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    sys.exit(main())
