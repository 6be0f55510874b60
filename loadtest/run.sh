#!/usr/bin/env bash
# Load test: oha against the real binary with a consumer that receives and
# checks every envelope. Loopback only, bounded in time, stops by itself.
#
#   loadtest/run.sh [--quick]
#
# Prints one markdown table and exits non-zero if any event that got a 200
# is missing at the consumer (or arrived twice).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10s
[ "${1:-}" = "--quick" ] && duration=3s

command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet
bin=target/release/hookwire

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
zmq_port=$(free_port)

"$bin" tap --bind "tcp://127.0.0.1:$zmq_port" >"$work/envelopes.jsonl" 2>"$work/tap.err" &
pids+=($!)
"$bin" --listen "127.0.0.1:$http_port" --push "tcp://127.0.0.1:$zmq_port" 2>"$work/hookwire.err" &
hw=$!
pids+=($hw)
for _ in $(seq 100); do grep -q '^ready$' "$work/hookwire.err" && break; sleep 0.1; done
grep -q '^ready$' "$work/hookwire.err" || { cat "$work/hookwire.err"; exit 1; }

base="http://127.0.0.1:$http_port"
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$hw/stat"; }

run() { # name connections oha-args...
    local name=$1 conns=$2; shift 2
    local before after
    before=$(cpu_ticks)
    oha --no-tui --output-format json -z "$duration" -c "$conns" "$@" >"$work/$name-$conns.json"
    after=$(cpu_ticks)
    echo "$name $conns $((after - before))" >>"$work/cpu.txt"
}

for conns in 16 64 256; do
    run get "$conns" "$base/affise/conversion/7?clickid=abc123&payout=12.50&currency=USD&status=1&sub1=x"
    run json "$conns" -m POST -T application/json \
        -d '{"leads":{"status":[{"id":"25399013","status_id":"142","price":"1000"}]},"account":{"id":"7039099"}}' \
        "$base/amocrm/lead/42"
    run form "$conns" -m POST -T application/x-www-form-urlencoded \
        -d 'param1=value1&param2=value26&clickid=abc123&payout=12.50' "$base/calltrack/call"
done

# Give the consumer a moment to take what is still in flight.
sleep 1

python3 - "$work" "$ticks" <<'EOF'
import json, sys, glob, os
work, ticks = sys.argv[1], int(sys.argv[2])
cpu = {}
for line in open(os.path.join(work, "cpu.txt")):
    name, conns, t = line.split()
    cpu[(name, int(conns))] = int(t) / ticks
rows, ok_total = [], 0
for path in sorted(glob.glob(os.path.join(work, "*-*.json"))):
    name, conns = os.path.basename(path)[:-5].split("-")
    r = json.load(open(path))
    codes = r.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    ok_total += ok
    lat = r["latencyPercentiles"]
    ms = lambda k: (lat.get(k) or 0) * 1000
    cpu_us = cpu[(name, int(conns))] / max(ok, 1) * 1e6
    other = sum(v for k, v in codes.items() if k != "200")
    rows.append(f"| {name} | {conns} | {r['summary']['requestsPerSec']:.0f} | {ms('p50'):.2f} | {ms('p99'):.2f} | {ms('p99.9'):.2f} | {cpu_us:.1f} | {ok} | {other} |")
ids, bad = set(), 0
dups = 0
for line in open(os.path.join(work, "envelopes.jsonl"), "rb"):
    try:
        i = json.loads(line)["id"]
    except Exception:
        bad += 1
        continue
    if i in ids:
        dups += 1
    ids.add(i)
print("| scenario | conns | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | 200s | other |")
print("|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
print()
print(f"200 responses: {ok_total}; envelopes received: {len(ids)}; invalid: {bad}; duplicate ids: {dups}")
if len(ids) < ok_total or bad or dups:
    print("FAIL: events that got a 200 are missing at the consumer (or invalid/duplicated)")
    sys.exit(1)
EOF
