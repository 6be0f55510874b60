#!/usr/bin/env bash
# Abuse: the real hookwire under hostile clients, on loopback, each
# scenario bounded (loadtest/abuse.py): 10 000 idle keep-alive
# connections, 300 slowloris senders (a header byte a second; each should
# get 408 at --request-timeout), 20 000 connect/close cycles during an oha
# load test, and 50 slow readers pipelining 1 000 requests each without
# reading. Beside each: a fresh client's p50/p99 against the unloaded
# baseline, RSS, descriptors; at the end every 200 against the events at
# the sink (loadtest/sink.rs). Prints a markdown table; exits non-zero if
# an event that got a 200 is missing at the sink or descriptors leak.
#
#   loadtest/abuse.sh          ABUSE_CORES=2 ABUSE_IDLE=10000 ...
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"
cores=${ABUSE_CORES:-$(nproc)}
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet --bin hookwire --example sink
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/hookwire
sink=$target/release/examples/sink
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
read -r zmq_port http_port admin_port <<<"$(free_ports 3)"

"$sink" --bind "tcp://127.0.0.1:$zmq_port" --max-seconds 900 >"$work/sink.json" 2>"$work/sink.err" &
sink_pid=$!; pids+=("$sink_pid")
# Room for 10 000 connections on each side of loopback. The idle timeout
# outlasts the idle scenario; slow readers are closed after it.
ulimit -n "$(ulimit -Hn)"
"$bin" serve --listen "127.0.0.1:$http_port" --admin "127.0.0.1:$admin_port" \
    --push "tcp://127.0.0.1:$zmq_port" --cores "$cores" --spool-dir "$work/spool" \
    --request-timeout 5s --idle-timeout 20s --drain-timeout 20s 2>"$work/hw.err" &
hw_pid=$!; pids+=("$hw_pid")
for _ in $(seq 300); do grep -q '^ready' "$work/hw.err" && break; sleep 0.1; done
grep -q '^ready' "$work/hw.err" || { cat "$work/hw.err" >&2; exit 1; }

timeout 900 python3 loadtest/abuse.py "$http_port" "$hw_pid" --request-timeout 5 --idle-timeout 20 \
    ${ABUSE_IDLE:+--idle "$ABUSE_IDLE"} ${ABUSE_SLOWLORIS:+--slowloris "$ABUSE_SLOWLORIS"} \
    ${ABUSE_FLOOD:+--flood "$ABUSE_FLOOD"} >"$work/rows.jsonl"
curl -s "http://127.0.0.1:$admin_port/stats" >"$work/stats.json"
kill -TERM "$hw_pid"; wait "$hw_pid" || true
kill -TERM "$sink_pid"; wait "$sink_pid" || true

python3 - "$work" "$cores" <<'PY'
import json, sys
work, cores = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(f"{work}/rows.jsonl")]
stats = json.load(open(f"{work}/stats.json"))["merged"]
sink = json.load(open(f"{work}/sink.json"))
base = rows[0]
mib = lambda b: f"{b / 2**20:.1f} MiB"
print(f"hookwire --cores {cores}; fresh client: sequential GETs on one keep-alive connection (Python)\n")
print("| scenario | fresh p50 ms | fresh p99 ms | p99 ÷ baseline | RSS | descriptors | notes |")
print("|---|---|---|---|---|---|---|")
ok = True
for r in rows:
    if r["scenario"] == "end":
        continue
    notes = {k: v for k, v in r.items() if k not in ("scenario", "p50_ms", "p99_ms", "rss", "fds")}
    if "rss_per_conn" in notes:
        notes["rss_per_conn"] = f'{notes["rss_per_conn"] / 1024:.1f} KiB'
    ratio = r["p99_ms"] / base["p99_ms"]
    print(f'| {r["scenario"]} | {r["p50_ms"]:.3f} | {r["p99_ms"]:.3f} | {ratio:.2f} | {mib(r["rss"])} | {r["fds"]} | '
          + ", ".join(f"{k} {v}" for k, v in notes.items()) + " |")
end = rows[-1]
ok_200 = stats["requests"].get("200", 0)
events = stats["events"]["accepted"]
print(f'\n200s {ok_200} (events accepted {events}); at the sink {sink["unique"]} '
      f'(invalid {sink["invalid"]}, duplicates {sink["duplicates"]}); '
      f'descriptors at the end {end["fds"]}, baseline {end["fds_baseline"]}; '
      f'refused as overloaded {stats["connections"].get("refused", 0)}')
if sink["unique"] != events or sink["invalid"] or sink["duplicates"]:
    print("FAIL: events that got a 200 are missing at the sink"); ok = False
if end["fds"] > end["fds_baseline"]:
    print("FAIL: descriptors did not return to the baseline"); ok = False
sys.exit(0 if ok else 1)
PY
