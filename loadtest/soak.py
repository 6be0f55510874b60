#!/usr/bin/env python3
"""The soak of loadtest/soak.sh: a real hookwire under a moderate mixed
load (GET postbacks, JSON and form POSTs, from oha at 30% of the req/s a
short calibration reached) for N minutes, on loopback. The consumer
(loadtest/sink.rs) is stopped for 10 s and started again every few
minutes, and hookwire gets a SIGTERM and a restart halfway. Every 10 s it
samples hookwire's RSS, descriptors and spool bytes, and a fresh client's
p99 (200 sequential GETs on one keep-alive connection); every 5 s in runs
under 10 minutes.

Fails (exit 1) if, in either of hookwire's two lives, RSS after warm-up
(at least a tenth of the run, and past the life's first consumer stop,
which fills the spool and re-sends) grows by more than 10%, descriptors at rest end above their baseline, or
the distinct ids all consumers received differ from the 200s answered.
Writes samples.json and soak.png (matplotlib) to --out.

    soak.py MINUTES --bin HOOKWIRE --sink SINK --out DIR [--cores N]
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("minutes", type=float)
p.add_argument("--bin", required=True)
p.add_argument("--sink", required=True)
p.add_argument("--oha", default="oha")
p.add_argument("--out", required=True)
p.add_argument("--cores", type=int, default=os.cpu_count())
p.add_argument("--share", type=float, default=0.3, help="of the calibrated max req/s")
a = p.parse_args()
os.makedirs(a.out, exist_ok=True)
work = a.out
total = a.minutes * 60
# Warm-up: a tenth of the run (at least 20 s), and 20 s past the life's
# first consumer stop: buffers, pools, the resend buffer and the spool's
# reads grow to their working size.
WARMUP = max(20.0, total / 10)
CHURN = max(30.0, min(180.0, total / 4))  # consumer stopped every CHURN s
SAMPLE = 10.0 if total >= 600 else 5.0  # seconds between samples


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


http_port, admin_port, zmq_port = free_port(), free_port(), free_port()
base = f"http://127.0.0.1:{http_port}"
procs = []


def spawn(args, **kw):
    proc = subprocess.Popen(args, **kw)
    procs.append(proc)
    return proc


sinks = []


churns = []  # (life, time the consumer came back)


def start_sink():
    n = len(sinks)
    out = open(f"{work}/sink{n}.json", "w")
    sink = spawn([a.sink, "--bind", f"tcp://127.0.0.1:{zmq_port}", "--max-seconds", str(total + 900),
                  "--ids", f"{work}/ids{n}.bin"], stdout=out, stderr=subprocess.DEVNULL)
    sinks.append(sink)


def stop_sink():
    sink = sinks[-1]
    sink.send_signal(signal.SIGTERM)
    sink.wait(timeout=60)


lives = []


def start_hookwire():
    err = open(f"{work}/hookwire{len(lives)}.err", "w")
    hw = spawn([a.bin, "serve", "--listen", f"127.0.0.1:{http_port}", "--admin", f"127.0.0.1:{admin_port}",
                "--push", f"tcp://127.0.0.1:{zmq_port}", "--cores", str(a.cores),
                "--spool-dir", f"{work}/spool"], stderr=err)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise SystemExit("hookwire did not become ready")
    lives.append({"pid": hw.pid, "proc": hw, "start": time.time()})
    return hw


def stats():
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=5) as r:
        return json.load(r)


def proc_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


probe_200s = 0


def probe(n=200):
    """p99 (ms) of n sequential GETs on one new keep-alive connection."""
    global probe_200s
    s = socket.create_connection(("127.0.0.1", http_port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = f"GET /soak/probe/1?n=1 HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    times, buf = [], b""
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(req)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode("latin-1").lower()
                length = int(head.split("content-length:")[1].split("\r\n")[0])
                if len(buf) >= end + 4 + length:
                    if head.startswith("http/1.1 200"):
                        probe_200s += 1
                    buf = buf[end + 4 + length:]
                    break
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("probe connection closed")
            buf += chunk
        times.append((time.perf_counter() - t) * 1000)
    s.close()
    times.sort()
    return times[int(len(times) * 0.99) - 1]


LOADS = [
    ("GET", [f"{base}/soak/conversion/7?clickid=abc123&payout=1.5&status=approved&offer=42"]),
    ("JSON", ["-m", "POST", "-T", "application/json",
              "-d", json.dumps({"event": "lead", "lead": {"id": 981, "fields": [{"k": "utm", "v": "x" * 40}] * 8}}),
              f"{base}/soak/json/1"]),
    ("form", ["-m", "POST", "-T", "application/x-www-form-urlencoded",
              "-d", "clickid=abc&payout=2.75&currency=USD&sub1=x&sub2=y",
              f"{base}/soak/form/1"]),
]


def oha(seconds, rate, out, args, conns=4):
    # -w: requests in flight at the deadline are waited for, so every 200
    # hookwire sent is counted.
    cmd = [a.oha, "--no-tui", "-w", "--output-format", "json", "-o", out, "-z", f"{seconds}s", "-c", str(conns)]
    if rate:
        cmd += ["-q", str(rate)]
    return spawn(cmd + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def oha_200s(path):
    with open(path) as f:
        return int(json.load(f).get("statusCodeDistribution", {}).get("200", 0))


samples = []
stop_sampling = threading.Event()
# Held by the sampler while it probes, and by the restart: no probe's
# event falls between the last count of a life and its SIGTERM.
quiet = threading.Lock()


def sampler():
    t0 = time.time()
    while not stop_sampling.wait(SAMPLE):
        with quiet:
            sample(t0)


def sample(t0):
    life = lives[-1]
    try:
        st = stats()
        back = [at for n, at in churns if n == len(lives) - 1]
        row = {"t": round(time.time() - t0, 1), "life": len(lives) - 1,
               "age": round(time.time() - life["start"], 1),
               "since_churn": round(time.time() - back[0], 1) if back else None,
               "rss": proc_rss(life["pid"]), "fds": proc_fds(life["pid"]),
               "spool": st["spool"]["stored_bytes"], "p99_ms": round(probe(), 3)}
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        row = {"t": round(time.time() - t0, 1), "life": len(lives) - 1, "error": str(e)}
    samples.append(row)
    print(json.dumps(row), flush=True)


n200 = 0
oha_runs = 0
accepted = []


def run_load(seconds, rate):
    """Each load at rate/3 for `seconds`, stopping the consumer every CHURN s."""
    global n200, oha_runs
    runs = []
    for name, args in LOADS:
        out = f"{work}/oha{oha_runs}-{name}.json"
        runs.append((out, oha(int(seconds), max(1, int(rate / 3)), out, args)))
    oha_runs += 1
    begin = time.time()
    next_churn = begin + min(CHURN / 2, 10)
    while any(r.poll() is None for _, r in runs):
        if time.time() >= next_churn and time.time() < begin + seconds - 15:
            stop_sink()
            time.sleep(10)
            start_sink()
            churns.append((len(lives) - 1, time.time()))
            next_churn += CHURN
        time.sleep(0.5)
    for out, _ in runs:
        n200 += oha_200s(out)


def main():
    global n200
    start_sink()
    start_hookwire()
    # Calibration: the GET at full speed for 5 s; its 200s count too.
    cal = f"{work}/calibrate.json"
    oha(5, 0, cal, LOADS[0][1], conns=32).wait(timeout=60)
    with open(cal) as f:
        max_rps = json.load(f)["summary"]["requestsPerSec"]
    n200 += oha_200s(cal)
    rate = max_rps * a.share
    print(f"calibrated {max_rps:.0f} req/s; soak at {rate:.0f} req/s ({a.share:.0%}) for {a.minutes} min", flush=True)
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    half = total / 2
    run_load(half, rate)
    # SIGTERM and a restart halfway; the spool carries what was pending.
    with quiet:
        hw = lives[-1]["proc"]
        accepted.append(stats()["merged"]["events"]["accepted"])
        lives[-1]["end_fds"] = proc_fds(hw.pid)
        hw.send_signal(signal.SIGTERM)
        hw.wait(timeout=60)
        start_hookwire()
    run_load(total - half, rate)
    stop_sampling.set()
    thread.join()
    # Let the spool drain to the consumer, then stop it.
    deadline = time.time() + 120
    while time.time() < deadline and stats()["spool"]["stored_bytes"] > 0:
        time.sleep(1)
    time.sleep(2)
    st = stats()
    accepted.append(st["merged"]["events"]["accepted"])
    lives[-1]["end_fds"] = proc_fds(lives[-1]["pid"])
    lives[-1]["proc"].send_signal(signal.SIGTERM)
    lives[-1]["proc"].wait(timeout=60)
    stop_sink()
    ids = np.unique(np.concatenate([np.fromfile(f"{work}/ids{i}.bin", dtype="<u8") for i in range(len(sinks))]))
    report(len(ids), rate, max_rps)


def report(unique, rate, max_rps):
    ok = True
    summary = {"minutes": a.minutes, "rate": round(rate), "max_rps": round(max_rps),
               "consumer_restarts": len(sinks) - 1, "hookwire_lives": len(lives),
               "200s": n200 + probe_200s, "accepted": sum(accepted), "unique_at_consumers": unique, "lives": []}
    for i in range(len(lives)):
        rows = [s for s in samples if s.get("life") == i and "rss" in s]
        warm = [s for s in rows if s["age"] >= WARMUP and (s["since_churn"] or 0) >= 20]
        if len(warm) < 2:
            print(f"FAIL: life {i} has {len(warm)} samples after warm-up; RSS growth cannot be judged"); ok = False
            continue
        base_rss = warm[0]["rss"]
        peak_rss = max(s["rss"] for s in warm)
        base_fds = min(s["fds"] for s in warm)
        growth = peak_rss / base_rss - 1
        life = {"rss_after_warmup_mib": round(base_rss / 2**20, 1), "rss_peak_mib": round(peak_rss / 2**20, 1),
                "rss_growth_pct": round(growth * 100, 1), "fds_baseline": base_fds,
                "fds_at_end": lives[i].get("end_fds"), "samples_after_warmup": len(warm),
                "p99_ms_median": float(np.median([s["p99_ms"] for s in rows])),
                "p99_ms_max": max(s["p99_ms"] for s in rows),
                "spool_max_bytes": max(s["spool"] for s in rows)}
        summary["lives"].append(life)
        if growth > 0.10:
            print(f"FAIL: life {i}: RSS grew {growth:.1%} after warm-up"); ok = False
        if lives[i].get("end_fds", 0) > base_fds:
            print(f"FAIL: life {i}: {lives[i]['end_fds']} descriptors at rest, baseline {base_fds}"); ok = False
    errors = [s for s in samples if "error" in s]
    summary["sample_errors"] = len(errors)
    if summary["200s"] != summary["accepted"] or unique != summary["accepted"]:
        print(f"FAIL: 200s {summary['200s']}, accepted {summary['accepted']}, distinct ids at the consumers {unique}")
        ok = False
    summary["ok"] = ok
    with open(f"{work}/samples.json", "w") as f:
        json.dump({"summary": summary, "samples": samples}, f)
    print(json.dumps(summary, indent=1))
    plot()
    raise SystemExit(0 if ok else 1)


def plot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [s for s in samples if "rss" in s]
    t = [s["t"] / 60 for s in rows]
    fig, ax = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    for axis, key, label, scale in [(ax[0], "rss", "RSS (MiB)", 2**20), (ax[1], "fds", "descriptors", 1),
                                    (ax[2], "spool", "spool (KiB)", 1024), (ax[3], "p99_ms", "fresh p99 (ms)", 1)]:
        axis.plot(t, [s[key] / scale for s in rows], marker=".", linewidth=1)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        restart = [s["t"] / 60 for s in rows if s["life"] == 1][:1]
        for r in restart:
            axis.axvline(r, color="red", linestyle="--", linewidth=0.8)
    ax[3].set_xlabel("minutes (red: hookwire restarted)")
    fig.suptitle(f"hookwire soak, {a.minutes:g} min, {a.cores} cores")
    fig.tight_layout()
    fig.savefig(f"{work}/soak.png", dpi=80)


try:
    main()
finally:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
