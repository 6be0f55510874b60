#!/usr/bin/env bash
# A full disk, as the spool meets it: hookwire spools onto a 4 MiB tmpfs
# with no consumer until it refuses, is stopped and started again on the
# full filesystem, then a consumer takes everything and new events are
# spooled again. Prints the status counts and how many 200s never reached
# the consumer (must be 0). Needs root (mount), oha; loopback only, about
# 20 s.
#
#   loadtest/fulldisk.sh [accepted|durable] [N]     # N GETs to fill (20000)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-accepted}
n=${2:-20000}
cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/hookwire
command -v oha >/dev/null || cargo install oha --locked -q
for port in 18480 18481 18482; do
    if ss -ltn | grep -q ":$port "; then echo "port $port is in use" >&2; exit 1; fi
done
work=$(mktemp -d)
mount -t tmpfs -o size=4m tmpfs "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    umount -l "$work" 2>/dev/null || true
    rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT
serve() {
    "$bin" serve --listen 127.0.0.1:18480 --admin 127.0.0.1:18481 \
        --push tcp://127.0.0.1:18482 --cores 2 --ack "$mode" \
        --spool-dir "$work/spool" 2>>"$work.log" &
    pids+=($!)
    for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18481/health && return; sleep 0.1; done
    echo "hookwire did not start:" >&2; cat "$work.log" >&2; exit 1
}
stop() { kill -TERM "$1"; wait "$1" || true; }
url="http://127.0.0.1:18480/affise/conversion/7?clickid=abcdefabcdefabcdef&payout=1.5&sub1=$(printf 'a%.0s' {1..60})&sub2=$(printf 'b%.0s' {1..60})"
statuses() { python3 -c 'import json,sys; print(json.load(sys.stdin)["statusCodeDistribution"])'; }
ready() { curl -s 127.0.0.1:18481/ready | python3 -c 'import json,sys; d=json.load(sys.stdin); print("spool", d["spool"], "problems", [p["code"] for p in d["problems"]])'; }

serve; first=${pids[-1]}
oha -n "$n" -c 16 --no-tui --output-format json "$url" >"$work.fill.json"
echo "fill, no consumer: $(statuses <"$work.fill.json")"
stop "$first"
echo "stopped: $(df -k --output=used,avail "$work" | tail -1 | awk '{print $1 " KiB used, " $2 " KiB free"}')"
serve; second=${pids[-1]}
echo "restarted on the full disk: $(ready)"
"$bin" tap --bind tcp://127.0.0.1:18482 >"$work.tap" 2>/dev/null &
tap=$!; pids+=($tap)
for _ in $(seq 100); do
    left=$(curl -s 127.0.0.1:18481/ready | python3 -c 'import json,sys; print(json.load(sys.stdin)["spool"]["stored_bytes"])')
    [ "$left" = 0 ] && break
    sleep 0.2
done
echo "delivered: $(ready)"
oha -n 2000 -c 8 --no-tui --output-format json "$url" >"$work.after.json"
echo "after the drain: $(statuses <"$work.after.json")"
sleep 1
stop "$second"; sleep 0.3; kill "$tap"; wait "$tap" 2>/dev/null || true
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
ok = sum(json.load(open(f"{w}.{k}.json"))["statusCodeDistribution"].get("200", 0) for k in ("fill", "after"))
ids = {json.loads(line)["id"] for line in open(f"{w}.tap")}
missing = max(0, ok - len(ids))
print(f"200s: {ok}; distinct ids at the consumer: {len(ids)}; missing: {missing}")
sys.exit(1 if missing else 0)
PY
rm -f "$work".*
