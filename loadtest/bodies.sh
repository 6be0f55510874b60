#!/usr/bin/env bash
# POST bodies against nginx: hookwire `--cores 1` with a real consumer
# (examples/sink) and nginx `return 200` with one worker (it reads and
# discards the same body), both loaded by `wrk -t1 -c64` and then by oha,
# rounds interleaved (the order reversed every other round). Prints per
# run and as medians: requests/s and server CPU µs per request (utime +
# stime of every thread, from /proc/PID/stat), and hookwire ÷ nginx.
#
#   loadtest/bodies.sh [ROUNDS]          # default 3
#
# Bodies (from bench/samples): `json4k` (webhook_json.http, 3.9 KiB),
# `json16k` (webhook_json_16k.http), `form1k` (amocrm_form.http); pick
# some with LT_BODIES="json4k form1k". LT_SECONDS (wrk's run, 8; after a
# 2 s warm-up), LT_OHA (oha's requests, 100000), LT_PORT (first of the
# four ports it listens on, 19200; they must be free), LT_BEFORE (another
# hookwire build, run as a third server `before`).
#
# Every envelope hookwire accepted (its /stats) must reach the sink once,
# valid; a run with a non-2xx answer or a lost event fails. Loopback only;
# every process started here is stopped by its PID; each load is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rounds=${1:-3}
seconds=${LT_SECONDS:-8}
oha_n=${LT_OHA:-100000}
bodies=(${LT_BODIES:-json4k json16k form1k})
port=${LT_PORT:-19200}
http=$port admin=$((port + 1)) zmq=$((port + 2)) nginx_port=$((port + 3))
for p in $http $admin $zmq $nginx_port; do
    if ss -ltnH "sport = :$p" | grep -q .; then echo "port $p is in use: set LT_PORT" >&2; exit 2; fi
done
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } >&2
command -v oha >/dev/null || cargo install oha --locked
nginx_bin=$(command -v nginx || true)
if [ -z "$nginx_bin" ]; then
    { apt-get update -qq && apt-get install -y -qq nginx-light; } >&2
    nginx_bin=$(command -v nginx)
fi
cargo build --release --quiet --bin hookwire --example sink
out=${CARGO_TARGET_DIR:-target}/release
bin=$out/hookwire
sink=$out/examples/sink

work=$(mktemp -d "${TMPDIR:-/tmp}/hookwire-bodies.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done; echo $t; }
stop() { # pid seconds
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# The bodies, their paths and content types, and a wrk script for each.
python3 - "$work" <<'EOF'
import os, sys
work = sys.argv[1]
for name, file in [("json4k", "webhook_json.http"), ("json16k", "webhook_json_16k.http"),
                   ("form1k", "amocrm_form.http")]:
    raw = open(os.path.join("bench/samples", file), "rb").read()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    path = lines[0].split(" ")[1]
    ctype = next(l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("content-type:"))
    open(os.path.join(work, name + ".body"), "wb").write(body)
    open(os.path.join(work, name + ".path"), "w").write(path)
    open(os.path.join(work, name + ".type"), "w").write(ctype)
    with open(os.path.join(work, name + ".lua"), "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{ctype}"\n'
                f'local f = io.open("{work}/{name}.body", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
EOF

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $work/nginx/body;
    access_log off;
    keepalive_requests 1000000;
    client_max_body_size 1m;
    server {
        listen 127.0.0.1:$nginx_port reuseport backlog=4096;
        location / {
            default_type application/json;
            return 200 '{"key":"in.gen.appsflyer.install","id":"7532420803820785665"}';
        }
    }
}
EOF

# wrk, then oha, against one server; CPU ticks of its PIDs around each.
load() { # id body url pids...
    local id=$1 body=$2 url=$3; shift 3
    local script=$work/$body.lua before
    timeout 30 wrk -t1 -c64 -d2s -s "$script" "$url" >/dev/null
    before=$(ticks "$@")
    timeout $((seconds + 30)) wrk -t1 -c64 -d"${seconds}s" -s "$script" "$url" >"$work/$id.wrk"
    echo $(($(ticks "$@") - before)) >"$work/$id.wrk.cpu"
    before=$(ticks "$@")
    timeout 300 oha --no-tui --output-format json -n "$oha_n" -c 64 -m POST \
        -T "$(cat "$work/$body.type")" -D "$work/$body.body" "$url" >"$work/$id.oha"
    echo $(($(ticks "$@") - before)) >"$work/$id.oha.cpu"
}

run_nginx() { # id body
    "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" 2>"$work/nginx/stderr" &
    local master=$! worker
    pids+=("$master")
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$nginx_port/" && break
        sleep 0.1
    done
    worker=$(pgrep -P "$master" | head -1)
    load "$1" "$2" "http://127.0.0.1:$nginx_port$(cat "$work/$2.path")" "$master" "$worker"
    kill -QUIT "$master"; stop "$master" 10
}

run_before() { run_hookwire "$@" "$LT_BEFORE"; }
run_hookwire() { # id body [binary]
    local exe=${3:-$bin}
    "$sink" --bind "tcp://127.0.0.1:$zmq" --max-seconds 600 >"$work/$1.sink" 2>/dev/null &
    local sink_pid=$! hw
    pids+=("$sink_pid")
    "$exe" --listen "127.0.0.1:$http" --admin "127.0.0.1:$admin" --push "tcp://127.0.0.1:$zmq" \
        --cores 1 --spool-dir "$work/$1.spool" 2>"$work/$1.err" &
    hw=$!
    pids+=("$hw")
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$admin/ready" && break
        sleep 0.1
    done
    load "$1" "$2" "http://127.0.0.1:$http$(cat "$work/$2.path")" "$hw"
    curl -s "http://127.0.0.1:$admin/stats" >"$work/$1.stats"
    stop "$hw" 30
    stop "$sink_pid" 20
    rm -rf "$work/$1.spool"
}

order=(hookwire nginx)
[ -n "${LT_BEFORE:-}" ] && order=(hookwire before nginx)
for round in $(seq "$rounds"); do
    for body in "${bodies[@]}"; do
        for server in "${order[@]}"; do
            echo "round $round: $body $server" >&2
            "run_$server" "$round.$body.$server" "$body"
            echo "$round $body $server" >>"$work/manifest"
        done
    done
    reversed=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do reversed+=("${order[i]}"); done
    order=("${reversed[@]}")
done

python3 - "$work" "$(getconf CLK_TCK)" <<'EOF'
import json, os, re, statistics, sys
work, tck = sys.argv[1], int(sys.argv[2])
med = statistics.median
runs, failed = {}, False
for line in open(os.path.join(work, "manifest")):
    rnd, body, server = line.split()
    rid = f"{rnd}.{body}.{server}"
    text = open(os.path.join(work, rid + ".wrk")).read()
    done = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    wrk_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    o = json.load(open(os.path.join(work, rid + ".oha")))
    codes = {k: int(v) for k, v in o["statusCodeDistribution"].items()}
    ok = codes.get("200", 0)
    if bad or ok != sum(codes.values()) + sum(int(v) for v in o.get("errorDistribution", {}).values()):
        failed = True
        print(f"FAIL {rid}: wrk non-2xx {bad and bad.group(1)}, oha statuses {codes}", file=sys.stderr)
    if errors:
        print(f"note {rid}: wrk socket errors: {errors.group(1)}", file=sys.stderr)
    r = dict(wrk_rps=wrk_rps,
             wrk_cpu=int(open(os.path.join(work, rid + ".wrk.cpu")).read()) / tck * 1e6 / done,
             oha_rps=ok / o["summary"]["total"],
             oha_cpu=int(open(os.path.join(work, rid + ".oha.cpu")).read()) / tck * 1e6 / max(ok, 1))
    if server != "nginx":
        accepted = json.load(open(os.path.join(work, rid + ".stats")))["merged"]["events"]["accepted"]
        sink = json.loads(open(os.path.join(work, rid + ".sink")).read().strip().splitlines()[-1])
        r["accepted"], r["sink"] = accepted, sink["unique"]
        if sink["unique"] != accepted or sink["invalid"] or sink["duplicates"]:
            failed = True
            print(f"LOST OR BAD EVENTS in {rid}: accepted {accepted}, sink {sink}", file=sys.stderr)
    runs.setdefault(body, {}).setdefault(server, {})[rnd] = r

print("| body | server | round | wrk req/s | CPU µs/req (wrk) | ÷ nginx | oha req/s | CPU µs/req (oha) | ÷ nginx |")
print("|---|---|---|---|---|---|---|---|---|")
for body, servers in runs.items():
    n = servers["nginx"]
    for server, rs in servers.items():
        rows = []
        for rnd in sorted(rs):
            a, b = rs[rnd], n[rnd]
            rows.append((a["wrk_rps"], a["wrk_cpu"], a["wrk_cpu"] / b["wrk_cpu"],
                         a["oha_rps"], a["oha_cpu"], a["oha_cpu"] / b["oha_cpu"]))
        for label, r in [*zip(sorted(rs), rows), ("median", tuple(med(c) for c in zip(*rows)))]:
            print(f"| {body} | {server} | {label} | {r[0]:,.0f} | {r[1]:.2f} | {r[2]:.2f}× | {r[3]:,.0f} "
                  f"| {r[4]:.2f} | {r[5]:.2f}× |".replace(",", " "))
for body, servers in runs.items():
    for server, h in servers.items():
        if server != "nginx":
            print(f"{body}: {server} accepted {sum(r['accepted'] for r in h.values())} events "
                  f"(warm-ups included), {sum(r['sink'] for r in h.values())} at the sink")
sys.exit(1 if failed else 0)
EOF
