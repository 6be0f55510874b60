#!/usr/bin/env bash
# CPU per request, one core each, side by side: nginx (one worker,
# `return 200`), hookwire `--cores 1` with a ZeroMQ sink, and the floor
# (loadtest/floor.rs), each on its `--io uring` and `--io poll` paths, plus
# any older builds given. GET postback (bench/samples' Affise GET) at 64
# connections: `wrk -t1` (the lighter client, so the server's own cost
# shows) and oha, interleaved rounds (order reversed every other round).
# CPU from /proc/PID/stat, every thread (libzmq's I/O thread included);
# system calls per request from `perf stat -e raw_syscalls:sys_enter`.
#
#   loadtest/cpu.sh [-r ROUNDS] [-d SECONDS] [-p PORT] [-k] [NAME=BINARY...]
#
# -k: a new connection per request (wrk with `Connection: close`, oha
# --disable-keepalive), as postback queues and HTTP/1.0 senders connect.
#
# NAME=BINARY adds an older hookwire (`hw-NAME`) or floor (`floor-NAME`,
# when BINARY's name contains "floor") build. Ports: PORT upwards
# (default: free ones). Loopback only; each run is time-bounded, every
# process started here is stopped by its PID. Prints a markdown table;
# exits non-zero if a hookwire 200 is missing at its sink, or if any
# server answered anything but 200.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

rounds=3 secs=5 base_port= close=
while getopts "r:d:p:k" opt; do
    case $opt in
        r) rounds=$OPTARG ;;
        d) secs=$OPTARG ;;
        p) base_port=$OPTARG ;;
        k) close=1 ;;
        *) sed -n '2,22p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
wrk_conn=() oha_conn=()
if [ -n "$close" ]; then
    wrk_conn=(-H "Connection: close") oha_conn=(--disable-keepalive)
fi

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } >&2
command -v oha >/dev/null || cargo install oha --locked
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light; } >&2
target=${CARGO_TARGET_DIR:-target}
echo "building release…" >&2
cargo build --release --quiet --bin hookwire --example sink --example floor
bin=$target/release/hookwire
floor=$target/release/examples/floor
sink=$target/release/examples/sink

# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
work_dir cpu
target_path=$(head -1 bench/samples/affise_get.http | cut -d' ' -f2)

names=() urls=() spids=()
add() { names+=("$1"); urls+=("$2"); spids+=("$3"); }

# nginx, one worker
port; p=$P; d=$work/nginx; mkdir -p "$d"
cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$p reuseport backlog=4096;
        location / {
            default_type application/json;
            return 200 '{"key":"in.gen.affise.conversion","id":"7532420803820785665"}';
        }
    }
}
EOF
nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>"$d/stderr" &
nginx_master=$!; pids+=("$nginx_master")
wait_ok "http://127.0.0.1:$p/"
add nginx "http://127.0.0.1:$p" "$nginx_master $(pgrep -P "$nginx_master" | tr '\n' ' ')"

sinks=()
hookwire() { # name binary [options]
    local name=$1 b=$2; shift 2
    local zp hp ap sp hp_pid
    port; zp=$P; port; hp=$P; port; ap=$P
    "$sink" --bind "tcp://127.0.0.1:$zp" --max-seconds 3600 >"$work/$name.sink.json" 2>/dev/null &
    sp=$!; pids+=("$sp"); sinks+=("$name:$sp")
    "$b" --listen "127.0.0.1:$hp" --admin "127.0.0.1:$ap" --push "tcp://127.0.0.1:$zp" \
        --cores 1 --spool-dir "$work/$name.spool" "$@" 2>"$work/$name.err" &
    hp_pid=$!; pids+=("$hp_pid")
    wait_ok "http://127.0.0.1:$ap/ready"
    add "$name" "http://127.0.0.1:$hp" "$hp_pid"
}
floor_run() { # name binary [options]
    local name=$1 b=$2; shift 2
    local fp
    port; fp=$P
    "$b" --listen "127.0.0.1:$fp" --cores 1 "$@" 2>"$work/$name.err" &
    local f=$!; pids+=("$f")
    wait_ok "http://127.0.0.1:$fp/"
    add "$name" "http://127.0.0.1:$fp" "$f"
}
hookwire hw-uring "$bin" --io uring
hookwire hw-poll "$bin" --io poll
floor_run floor-uring "$floor" --io uring
floor_run floor-poll "$floor" --io poll
for extra in "$@"; do
    name=${extra%%=*} b=${extra#*=}
    case $b in
        *floor*) floor_run "floor-$name" "$b" ;;
        *) hookwire "hw-$name" "$b" ;;
    esac
done

# name tool round -> "$work/NAME.TOOL.ROUND": requests cpu_ticks non200
measure() {
    local i=$1 tool=$2 round=$3 before after out n bad
    local url="${urls[$i]}$target_path"
    # shellcheck disable=SC2086
    before=$(ticks ${spids[$i]})
    if [ "$tool" = wrk ]; then
        out=$(timeout $((secs + 30)) wrk -t1 -c64 -d"${secs}s" "${wrk_conn[@]}" "$url")
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        bad=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    else
        # Requests cut by -z's deadline are not errors of the server.
        out=$(timeout $((secs + 30)) oha --no-tui --output-format json -c 64 -z "${secs}s" "${oha_conn[@]}" "$url")
        n=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["statusCodeDistribution"].get("200",0))')
        bad=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(v for k,v in d["statusCodeDistribution"].items() if k!="200")+sum(v for k,v in d.get("errorDistribution",{}).items() if "deadline" not in k))')
    fi
    # shellcheck disable=SC2086
    after=$(ticks ${spids[$i]})
    echo "$n $((after - before)) ${bad:-0} $secs" >"$work/${names[$i]}.$tool.$round"
}
order=$(seq 0 $((${#names[@]} - 1)))
for round in $(seq "$rounds"); do
    for tool in wrk oha; do
        seq_=$order
        [ $((round % 2)) = 0 ] && seq_=$(echo "$order" | tac)
        for i in $seq_; do
            echo "round $round $tool ${names[$i]}" >&2
            measure "$i" "$tool" "$round"
        done
    done
done

# System calls per request: perf stat over one more wrk run each.
for i in $order; do
    url="${urls[$i]}$target_path"
    # shellcheck disable=SC2206
    pp=(${spids[$i]})
    plist=$(IFS=,; echo "${pp[*]}")
    perf stat -e raw_syscalls:sys_enter -x, -o "$work/${names[$i]}.perf" -p "$plist" -- sleep "$secs" &
    perf_pid=$!
    out=$(timeout $((secs + 30)) wrk -t1 -c64 -d"${secs}s" "${wrk_conn[@]}" "$url")
    wait "$perf_pid" || true
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    calls=$(grep raw_syscalls "$work/${names[$i]}.perf" | cut -d, -f1)
    echo "$n $calls" >"$work/${names[$i]}.sys"
done

# Every hookwire 200 at its sink.
status=0
for entry in "${sinks[@]}"; do
    name=${entry%%:*} sp=${entry#*:}
    for i in $order; do [ "${names[$i]}" = "$name" ] && hw=${spids[$i]}; done
    kill -TERM "$hw"; for _ in $(seq 300); do kill -0 "$hw" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$sp"; for _ in $(seq 300); do kill -0 "$sp" 2>/dev/null || break; sleep 0.1; done
    echo "$name $(cat "$work/$name.sink.json")" >>"$work/sinks"
done

python3 - "$work" "$rounds" "$(getconf CLK_TCK)" "${close:+close}" "${names[@]}" <<'EOF' || status=1
import json, os, statistics, sys
work, rounds, hz, close, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
def runs(name, tool):
    out = []
    for r in range(1, rounds + 1):
        n, t, bad, s = open(f"{work}/{name}.{tool}.{r}").read().split()
        out.append((int(n), int(t), int(bad), float(s)))
    return out
ok = True
rows = {}
for name in names:
    row = {}
    for tool in ("wrk", "oha"):
        rs = runs(name, tool)
        if any(b for _, _, b, _ in rs):
            print(f"FAIL: {name} {tool}: answers other than 200")
            ok = False
        row[tool + "_us"] = [t * 1e6 / hz / n for n, t, _, _ in rs]
        row[tool + "_rps"] = [n / s for n, _, _, s in rs]
        row[tool + "_n"] = sum(n for n, _, _, _ in rs)
    n, calls = open(f"{work}/{name}.sys").read().split()
    row["sys"] = float(calls) / int(n) if calls.replace('.', '').isdigit() else float("nan")
    row["sys_n"] = int(n)
    rows[name] = row
med = statistics.median
how = "a new connection per request (wrk `Connection: close`, oha --disable-keepalive)" if close else "keep-alive"
print(f"{rounds} interleaved rounds; wrk -t1 -c64 and oha -c64, {how}, one core each.\n")
print("| server | CPU µs/request, wrk (median) | ÷ nginx | requests/s, wrk | CPU µs/request, oha | ÷ nginx | requests/s, oha | system calls/request |")
print("|---|---|---|---|---|---|---|---|")
ng = rows.get("nginx")
for name in names:
    r = rows[name]
    def ratio(k):
        if not ng:
            return "-"
        per = [a / b for a, b in zip(r[k], ng[k])]
        return f"{med(per):.2f}"
    print(f"| {name} | {med(r['wrk_us']):.2f} ({min(r['wrk_us']):.2f}–{max(r['wrk_us']):.2f}) | {ratio('wrk_us')} | {med(r['wrk_rps'])/1000:.0f}k "
          f"| {med(r['oha_us']):.2f} | {ratio('oha_us')} | {med(r['oha_rps'])/1000:.0f}k | {r['sys']:.3f} |")
print()
for line in open(f"{work}/sinks"):
    name, js = line.split(" ", 1)
    d = json.loads(js)
    # wrk counts every answer; its non-200s are refused above. The
    # perf-stat run's requests count too.
    sent = rows[name]["wrk_n"] + rows[name]["oha_n"] + rows[name]["sys_n"]
    got = d["unique"]
    flag = "" if got >= sent and d["invalid"] == 0 and d["duplicates"] == 0 else "  FAIL"
    if flag:
        ok = False
    print(f"{name}: sink received {got} unique envelopes for {sent} 200s (wrk and oha), invalid {d['invalid']}, duplicates {d['duplicates']}{flag}")
sys.exit(0 if ok else 1)
EOF
exit $status
