#!/usr/bin/env bash
# The ClickHouse writer under load: N events (default 100 000) through
# hookwire on an acknowledged route into chDB (clients/python/
# clickhouse_writer.py), the writer killed with SIGKILL and started again
# twice mid-load. Prints the figures and fails unless
# count(DISTINCT id) and, after OPTIMIZE … FINAL, count() equal the 200s.
#
#   loadtest/clickhouse.sh [N]
#
# Needs oha and the chdb venv (tests/py/setup.sh tests/py/requirements-chdb.txt,
# made here when missing). Loopback only; every process it starts is
# stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"
n=${1:-100000}
target=${CARGO_TARGET_DIR:-target}
bin="$target/release/hookwire"
[ -x "$bin" ] || cargo build --release
py=$(bash tests/py/setup.sh tests/py/requirements-chdb.txt)
dir=$(mktemp -d)
listening() { ss -ltn "sport = :$1" | grep -q LISTEN; }
read -r http admin pull ack <<<"$(free_ports 4)"
for p in $http $admin $pull $ack; do
    if listening "$p"; then echo "port $p is taken" >&2; exit 1; fi
done
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

writer() {
    "$py" clients/python/clickhouse_writer.py --pull "tcp://127.0.0.1:$pull" \
        --ack "tcp://127.0.0.1:$ack" --path "$dir/chdb" >>"$dir/writer.log" 2>&1 &
    wpid=$!
    pids+=("$wpid")
    until grep -q ready "$dir/writer.log" 2>/dev/null; do sleep 0.1; done
}
stats() { python3 -c "import json,urllib.request as u; r=json.load(u.urlopen('http://127.0.0.1:$admin/stats'))['merged']['routes'][0]; print(r['acks']['unacked'], r['waiting'], r['delivered'], r['resent'])"; }

"$bin" serve --listen "127.0.0.1:$http" --admin "127.0.0.1:$admin" --cores 2 \
    --push "tcp://127.0.0.1:$pull" --ack-endpoint "*=tcp://127.0.0.1:$ack" \
    --spool-dir "$dir/spool" 2>"$dir/hookwire.log" &
pids+=($!)
until grep -q '^ready' "$dir/hookwire.log"; do sleep 0.1; done
writer
oha -n "$n" -c 16 --no-tui "http://127.0.0.1:$http/shop/order/7?sku=a1&price=12.50" >"$dir/oha.txt" &
oha_pid=$!
pids+=("$oha_pid")
for kill in 1 2; do
    sleep 1.5
    kill -9 "$wpid"; wait "$wpid" 2>/dev/null || true
    echo "writer killed ($kill); unacked, spool bytes, delivered, resent: $(stats)"
    writer
done
wait "$oha_pid"
ok=$(grep -Eo '\[200\] [0-9]+' "$dir/oha.txt" | awk '{print $2}')
for _ in $(seq 600); do
    read -r unacked waiting delivered resent < <(stats)
    [ "$unacked" = 0 ] && [ "$waiting" = 0 ] && [ "$delivered" -ge "$ok" ] && break
    sleep 0.2
done
echo "hookwire: $ok answered 200; unacked $unacked, spool $waiting bytes, delivered (acked) $delivered, resent $resent"
kill "$wpid"; wait "$wpid" 2>/dev/null || true
"$py" - "$dir/chdb" "$ok" <<'PY'
import sys
from chdb import session
s = session.Session(sys.argv[1])
q = lambda sql: str(s.query(sql, "CSV")).strip()
ok = int(sys.argv[2])
rows, distinct = map(int, q("SELECT count(), count(DISTINCT id) FROM hookwire.events").split(","))
q("OPTIMIZE TABLE hookwire.events FINAL")
final = int(q("SELECT count() FROM hookwire.events"))
print(f"chdb: {rows} rows inserted, count(DISTINCT id) {distinct}, count() after OPTIMIZE FINAL {final}, 200s {ok}")
print(q("SELECT key, count() FROM hookwire.events FINAL GROUP BY key ORDER BY key"))
sys.exit(0 if distinct == ok == final else 1)
PY
