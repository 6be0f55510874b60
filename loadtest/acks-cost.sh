#!/usr/bin/env bash
# The cost of acknowledged delivery: hookwire's CPU per event on a route
# with --ack-endpoint (consumer: `hookwire tap --ack`) against a plain
# route (consumer: `hookwire tap`), interleaved rounds (order reversed
# every other round), the same oha load (-n) each time. CPU is hookwire's
# utime + stime from /proc/PID/stat. Prints each round, then the medians
# and the median of the per-round ratios.
#
#   loadtest/acks-cost.sh [ROUNDS] [REQUESTS]
#
# Loopback only; every process it starts is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"
rounds=${1:-5}
n=${2:-100000}
bin="${CARGO_TARGET_DIR:-target}/release/hookwire"
[ -x "$bin" ] || cargo build --release
dir=$(mktemp -d)
listening() { ss -ltn "sport = :$1" | grep -q LISTEN; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

# One run: prints "events cpu_us_per_event requests_per_s".
run() {
    local acked=$1 http pull ack
    read -r http pull ack <<<"$(free_ports 3)"
    for p in $http $pull $ack; do
        if listening "$p"; then echo "port $p is taken" >&2; exit 1; fi
    done
    local tap_args=(tap --bind "tcp://127.0.0.1:$pull") serve_args=()
    if [ "$acked" = 1 ]; then
        tap_args+=(--ack "tcp://127.0.0.1:$ack")
        serve_args+=(--ack-endpoint "*=tcp://127.0.0.1:$ack")
    fi
    "$bin" "${tap_args[@]}" >/dev/null 2>&1 &
    local tap=$!
    pids+=("$tap")
    rm -rf "$dir/spool"
    "$bin" serve --listen "127.0.0.1:$http" --admin off --cores 1 \
        --push "tcp://127.0.0.1:$pull" --spool-dir "$dir/spool" "${serve_args[@]}" 2>"$dir/hw.log" &
    local hw=$!
    pids+=("$hw")
    until grep -q '^ready' "$dir/hw.log"; do sleep 0.05; done
    sleep 0.3
    local before after
    before=$(cpu_ticks "$hw")
    oha -n "$n" -c 64 --no-tui "http://127.0.0.1:$http/affise/conversion/7?clickid=abc&payout=1.5" >"$dir/oha.txt"
    sleep 0.5 # the last acks
    after=$(cpu_ticks "$hw")
    kill "$hw" "$tap"; wait "$hw" "$tap" 2>/dev/null || true
    local ok rps
    ok=$(grep -Eo '\[200\] [0-9]+' "$dir/oha.txt" | awk '{print $2}')
    rps=$(grep -Eo 'Requests/sec:\s+[0-9.]+' "$dir/oha.txt" | awk '{print $2}')
    python3 -c "print($ok, round(($after - $before) / $hz * 1e6 / $ok, 2), round($rps))"
}

echo "round variant events cpu_us_per_event requests_per_s"
: >"$dir/rows"
for r in $(seq "$rounds"); do
    order="0 1"; [ $((r % 2)) = 0 ] && order="1 0"
    for acked in $order; do
        row=$(run "$acked")
        name=plain; [ "$acked" = 1 ] && name=acked
        echo "$r $name $row"
        echo "$r $name $row" >>"$dir/rows"
    done
done
python3 - "$dir/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, name, events, cpu, rps in rows:
    by.setdefault(r, {})[name] = (float(cpu), float(rps))
med = lambda xs: statistics.median(xs)
plain = [v["plain"] for v in by.values()]
acked = [v["acked"] for v in by.values()]
print(f"median CPU per event: plain {med([p[0] for p in plain]):.2f} µs, acked {med([a[0] for a in acked]):.2f} µs")
print(f"median requests/s: plain {med([p[1] for p in plain]):.0f}, acked {med([a[1] for a in acked]):.0f}")
print(f"acked / plain, median of per-round ratios: CPU per event {med([v['acked'][0] / v['plain'][0] for v in by.values()]):.2f}x, requests/s {med([v['acked'][1] / v['plain'][1] for v in by.values()]):.2f}x")
PY
