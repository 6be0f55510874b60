#!/usr/bin/env bash
# Load test: oha against the real hookwire binary, with a ZeroMQ consumer
# (loadtest/sink.rs) that receives and checks every envelope, and side-by-side
# anchors on the same machine at the same moment: nginx `return 200`, nginx
# writing a JSON access-log line per request, and a bare glommio
# accept/read/write loop (loadtest/floor.rs).
#
#   loadtest/run.sh [--quick]
#
# On a fresh machine it builds release, installs oha (cargo install) and
# nginx-light (apt-get) when missing. Everything runs on loopback, each
# oha run is a fixed number of requests (-n) under a time bound, and every
# process it starts is stopped by its PID when it exits.
#
# Phase 1: hookwire alone, GET postback / JSON POST / form POST at 16, 64 and
# 256 connections. Each run gets a fresh hookwire and a fresh sink, so the
# sink's count is compared exactly with oha's 200s, and hookwire's own
# latency percentiles (GET /stats on the admin port) cover that run only.
# Phase 2: GET postback at 64 connections, interleaved rounds of hookwire,
# nginx, nginx+JSON log and the floor (order reversed every other round);
# hookwire ÷ each anchor per round, and the median over the rounds. Each
# round runs keep-alive, then a new connection per request (oha
# --disable-keepalive), as postback queues and HTTP/1.0 senders connect.
#
# Prints the markdown tables and exits non-zero if any event that got a 200
# is missing at the sink (or arrived invalid or twice).
#
# Knobs (environment): LT_REQUESTS (requests per run), LT_ROUNDS
# (interleaved rounds, at least 3), LT_CORES (hookwire cores = nginx workers
# = floor executors; default: every CPU), LT_TIMEOUT (seconds per oha run),
# LT_HOOKWIRE_ARGS (more hookwire options, e.g. "--ack durable"), LT_KEEP=1
# (keep the temp dir with the raw oha/stats/sink files).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

mode=full
case "${1:-}" in
    --quick) mode=quick ;;
    "") ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
if [ $mode = quick ]; then
    requests=${LT_REQUESTS:-100000}
    rounds=${LT_ROUNDS:-3}
else
    requests=${LT_REQUESTS:-500000}
    rounds=${LT_ROUNDS:-5}
fi
cores=${LT_CORES:-$(nproc)}
oha_timeout=${LT_TIMEOUT:-180}
[ "$rounds" -ge 3 ] || { echo "LT_ROUNDS must be at least 3" >&2; exit 2; }

# --- tools -------------------------------------------------------------------
command -v python3 >/dev/null || { echo "python3 is needed for ports and the report" >&2; exit 1; }
command -v oha >/dev/null || cargo install oha --locked
nginx_bin=$(command -v nginx || true)
if [ -z "$nginx_bin" ]; then
    echo "nginx not found: installing nginx-light (its packaged service, if any, is not used)" >&2
    if { apt-get update -qq && apt-get install -y -qq nginx-light; } >&2; then
        nginx_bin=$(command -v nginx || true)
    fi
    [ -n "$nginx_bin" ] || echo "WARNING: nginx could not be installed: the nginx anchors are skipped" >&2
fi
echo "building release…" >&2
cargo build --release --quiet --bin hookwire --example sink --example floor
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/hookwire
has_spool=0
"$bin" --help 2>/dev/null | grep -q -- --spool-dir && has_spool=1
sink=$target/release/examples/sink
floor=$target/release/examples/floor

# --- bookkeeping and cleanup -------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/hookwire-loadtest.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${LT_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# GET a URL: `http_get status URL` prints the status (0: no answer),
# `http_get body URL` the body.
http_get() { python3 - "$1" "$2" <<'EOF'
import sys, urllib.request, urllib.error
what, url = sys.argv[1], sys.argv[2]
try:
    r = urllib.request.urlopen(url, timeout=5)
    status, body = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, body = e.code, ""
except Exception:
    status, body = 0, ""
print(status if what == "status" else body)
EOF
}
ticks=$(getconf CLK_TCK)
# utime+stime (clock ticks) of the given PIDs, every thread included.
cpu_ticks() {
    local total=0 pid t
    for pid in "$@"; do
        t=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
        total=$((total + t))
    done
    echo "$total"
}
# Waits (bounded) for a process to exit; KILLs it after $2 seconds.
reap() {
    local pid=$1 limit=${2:-15} i
    for i in $(seq $((limit * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && { echo "pid $pid did not stop: killed" >&2; kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true
    # Reaped: forget it, so cleanup never signals a PID the system reused.
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}
wait_line() { # file line seconds
    for _ in $(seq $(($3 * 10))); do grep -qx "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

# --- the requests: bench/samples' Affise GET, 4 KiB JSON, 1 KiB form --------
python3 - "$work" <<'EOF'
import sys, os
work = sys.argv[1]
def split(name):
    raw = open(os.path.join("bench/samples", name), "rb").read()
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].split(b" ")[1].decode(), body
target, _ = split("affise_get.http")
open(os.path.join(work, "get.target"), "w").write(target)
for name, out in [("webhook_json.http", "json"), ("amocrm_form.http", "form")]:
    target, body = split(name)
    open(os.path.join(work, out + ".target"), "w").write(target)
    open(os.path.join(work, out + ".body"), "wb").write(body)
EOF
oha_args() { # scenario base-url
    case $1 in
        get) echo "$2$(cat "$work/get.target")" ;;
        close) echo "--disable-keepalive $2$(cat "$work/get.target")" ;;
        json) echo "-m POST -T application/json -D $work/json.body $2$(cat "$work/json.target")" ;;
        form) echo "-m POST -T application/x-www-form-urlencoded -D $work/form.body $2$(cat "$work/form.target")" ;;
    esac
}
# oha against a URL; CPU ticks of the server PIDs around it -> $id.cpu
load() { # id scenario conns base-url pids...
    local id=$1 scenario=$2 conns=$3 base=$4; shift 4
    local before after
    before=$(cpu_ticks "$@")
    # shellcheck disable=SC2046
    if ! timeout "$oha_timeout" oha --no-tui --output-format json -n "$requests" -c "$conns" \
        $(oha_args "$scenario" "$base") >"$work/$id.oha.json" 2>"$work/$id.oha.err"; then
        echo "oha failed or took more than ${oha_timeout}s ($id):" >&2; cat "$work/$id.oha.err" >&2; exit 1
    fi
    after=$(cpu_ticks "$@")
    echo "$((after - before))" >"$work/$id.cpu"
}
manifest() { echo "$*" >>"$work/manifest"; } # id server scenario conns round

# --- hookwire with a fresh sink ----------------------------------------------
run_hookwire() { # id scenario conns round
    local id=$1 scenario=$2 conns=$3 round=$4
    local zmq_port http_port admin_port sink_pid hw_pid sink_before
    read -r zmq_port http_port admin_port <<<"$(free_ports 3)"
    "$sink" --bind "tcp://127.0.0.1:$zmq_port" --max-seconds 900 \
        >"$work/$id.sink.json" 2>"$work/$id.sink.err" &
    sink_pid=$!; pids+=("$sink_pid")
    local spool=()
    # The on-disk spool (when this hookwire has one) lives in the temp dir.
    [ "$has_spool" = 1 ] && spool=(--spool-dir "$work/$id.spool")
    # shellcheck disable=SC2086
    "$bin" --listen "127.0.0.1:$http_port" --admin "127.0.0.1:$admin_port" \
        --push "tcp://127.0.0.1:$zmq_port" --cores "$cores" --drain-timeout 20s \
        "${spool[@]}" ${LT_HOOKWIRE_ARGS:-} 2>"$work/$id.hw.err" &
    hw_pid=$!; pids+=("$hw_pid")
    wait_line "$work/$id.hw.err" ready 30
    for _ in $(seq 100); do
        [ "$(http_get status "http://127.0.0.1:$admin_port/ready")" = 200 ] && break
        sleep 0.1
    done
    sink_before=$(cpu_ticks "$sink_pid")
    load "$id" "$scenario" "$conns" "http://127.0.0.1:$http_port" "$hw_pid"
    echo "$(($(cpu_ticks "$sink_pid") - sink_before))" >"$work/$id.sinkcpu"
    http_get body "http://127.0.0.1:$admin_port/stats" >"$work/$id.stats.json"
    # Drain: every accepted event handed to ZeroMQ, then the sink stops once quiet.
    kill -TERM "$hw_pid"; reap "$hw_pid" 30
    kill -TERM "$sink_pid"; reap "$sink_pid" 20
    rm -rf "$work/$id.spool"
    manifest "$id hookwire $scenario $conns $round"
}

# --- anchors -----------------------------------------------------------------
nginx_pids=()
start_nginx() { # name port log(0|1)
    local name=$1 port=$2 log=$3 dir="$work/$1"
    mkdir -p "$dir/logs"
    local access="access_log off;"
    [ "$log" = 1 ] && access="log_format hookjson escape=json '{\"time\":\"\$time_iso8601\",\"ip\":\"\$remote_addr\",\"method\":\"\$request_method\",\"uri\":\"\$request_uri\",\"status\":\$status,\"ua\":\"\$http_user_agent\",\"host\":\"\$host\",\"bytes\":\$body_bytes_sent,\"rt\":\$request_time}';
        access_log $dir/access.log hookjson buffer=64k;"
    cat >"$dir/nginx.conf" <<EOF
worker_processes $cores;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 4096; }
http {
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    $access
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
        location / {
            default_type application/json;
            return 200 '{"key":"in.gen.affise.conversion","id":"7532420803820785665"}';
        }
    }
}
EOF
    "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>"$dir/stderr" &
    local master=$!; pids+=("$master"); nginx_pids+=("$master")
    local code=0
    for _ in $(seq 50); do
        [ "$(pgrep -P "$master" | wc -l)" -ge "$cores" ] && break
        sleep 0.1
    done
    # Until the first 200: exactly one request reaches the access log.
    for _ in $(seq 50); do
        code=$(http_get status "http://127.0.0.1:$port/")
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { echo "nginx $name did not start:" >&2; cat "$dir/stderr" "$dir/error.log" >&2; exit 1; }
    echo "$master $(pgrep -P "$master" | tr '\n' ' ')" >"$dir/pids"
}

# --- phase 1: hookwire scenarios ---------------------------------------------
git_dirty=$(git status --porcelain -- src Cargo.toml 2>/dev/null | grep -q . && echo " (+ uncommitted changes in src/ or Cargo.toml)" || true)
{
    echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(uname -sr)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "mode: $mode; $requests requests per run; $rounds interleaved rounds; hookwire --cores $cores${LT_HOOKWIRE_ARGS:+ $LT_HOOKWIRE_ARGS}, nginx worker_processes $cores, floor $cores executors"
    echo "hookwire: $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-72)${git_dirty:-}"
    echo "tools: $(oha --version | head -1), ${nginx_bin:+$("$nginx_bin" -v 2>&1)}"
} >"$work/header"
cat "$work/header" >&2
for conns in 16 64 256; do
    for scenario in get json form; do
        echo "hookwire $scenario c=$conns…" >&2
        run_hookwire "hw-$scenario-$conns" "$scenario" "$conns" 0
    done
done

# --- phase 2: interleaved anchors, GET postback at 64 connections -----------
read -r nginx_port nginxlog_port floor_port <<<"$(free_ports 3)"
if [ -n "$nginx_bin" ]; then
    start_nginx nginx "$nginx_port" 0
    start_nginx nginx-log "$nginxlog_port" 1
fi
"$floor" --listen "127.0.0.1:$floor_port" --cores "$cores" 2>"$work/floor.err" &
floor_pid=$!; pids+=("$floor_pid")
wait_line "$work/floor.err" ready 30

run_anchor() { # server round scenario
    local server=$1 round=$2 scenario=$3 id="$1-$3-r$2"
    echo "round $round, $scenario: $server…" >&2
    case $server in
        hookwire) run_hookwire "$id" "$scenario" 64 "$round"; return ;;
        nginx) load "$id" "$scenario" 64 "http://127.0.0.1:$nginx_port" $(cat "$work/nginx/pids") ;;
        nginx-log) load "$id" "$scenario" 64 "http://127.0.0.1:$nginxlog_port" $(cat "$work/nginx-log/pids") ;;
        floor) load "$id" "$scenario" 64 "http://127.0.0.1:$floor_port" "$floor_pid" ;;
    esac
    manifest "$id $server $scenario 64 $round"
}
servers=(hookwire floor)
[ -n "$nginx_bin" ] && servers=(hookwire nginx nginx-log floor)
for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then order=("${servers[@]}"); else
        order=(); for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[$i]}"); done
    fi
    for scenario in get close; do
        for server in "${order[@]}"; do run_anchor "$server" "$round" "$scenario"; done
    done
done

# Stop the anchors by PID; nginx flushes its buffered access log on the way out.
for master in "${nginx_pids[@]}"; do kill -QUIT "$master" 2>/dev/null || true; reap "$master" 15; done
kill -TERM "$floor_pid"; reap "$floor_pid" 10
log_lines=0
[ -f "$work/nginx-log/access.log" ] && log_lines=$(wc -l <"$work/nginx-log/access.log")

# --- report ------------------------------------------------------------------
python3 - "$work" "$ticks" "$log_lines" <<'EOF'
import json, os, statistics, sys
work, ticks, log_lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def load(path, default=None):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else default
    except (OSError, ValueError):
        return default

runs, failures = [], []
for line in open(os.path.join(work, "manifest")):
    rid, server, scenario, conns, rnd = line.split()
    oha = load(os.path.join(work, rid + ".oha.json"))
    codes = oha.get("statusCodeDistribution", {})
    ok = int(codes.get("200", 0))
    other = sum(int(v) for k, v in codes.items() if k != "200")
    errors = sum(int(v) for v in (oha.get("errorDistribution") or {}).values())
    secs = oha["summary"]["total"]
    lat = oha.get("latencyPercentiles", {})
    ms = lambda k: (lat.get(k) or 0) * 1000
    cpu_s = int(open(os.path.join(work, rid + ".cpu")).read()) / ticks
    r = dict(id=rid, server=server, scenario=scenario, conns=int(conns), round=int(rnd),
             ok=ok, other=other, errors=errors, rps=ok / secs if secs else 0.0,
             p50=ms("p50"), p99=ms("p99"), p999=ms("p99.9"),
             cpu_us=cpu_s / max(ok, 1) * 1e6)
    if server == "hookwire":
        stats = load(os.path.join(work, rid + ".stats.json"), {}) or {}
        req = stats.get("merged", {}).get("request_us", {})
        r["hw_p50"], r["hw_p99"] = req.get("p50"), req.get("p99")
        r["accepted"] = stats.get("merged", {}).get("events", {}).get("accepted")
        sink = load(os.path.join(work, rid + ".sink.json"))
        sink_cpu = int(open(os.path.join(work, rid + ".sinkcpu")).read()) / ticks
        r["sink_cpu_us"] = sink_cpu / max(ok, 1) * 1e6
        if sink is None:
            failures.append(f"{rid}: the sink printed no summary")
            r["at_sink"] = 0
        else:
            r["at_sink"] = sink["unique"]
            if sink["invalid"] or sink["duplicates"]:
                failures.append(f"{rid}: {sink['invalid']} invalid and {sink['duplicates']} duplicate envelopes; first invalid: {sink['first_invalid']}")
            if sink["unique"] < ok:
                failures.append(f"{rid}: {ok - sink['unique']} of {ok} events that got a 200 are missing at the sink")
            elif sink["unique"] > ok:
                # Only requests oha gave up on (errors) may have been processed uncounted.
                extra = sink["unique"] - ok
                if extra > errors + other:
                    failures.append(f"{rid}: the sink got {extra} more envelopes than oha counted 200s ({errors} oha errors)")
                else:
                    print(f"note: {rid}: {extra} envelopes for requests oha recorded as errors", file=sys.stderr)
    runs.append(r)

print(open(os.path.join(work, "header")).read().rstrip())
print()
f = lambda v, d=1: "–" if v is None else f"{v:,.{d}f}".replace(",", " ")
print("| server | scenario | conns | req/s | p50 ms | p99 ms | p99.9 ms | hookwire p50 µs | hookwire p99 µs | server CPU µs/req | sink CPU µs/event | 200s | at sink | other |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
names = {"get": "GET postback", "close": "GET postback, a connection each", "json": "JSON POST 4 KiB",
         "form": "form POST 1 KiB"}
def row(r, label=None):
    hw = r["server"] == "hookwire"
    print(f"| {label or r['server']} | {names[r['scenario']]} | {r['conns']} | {f(r['rps'], 0)} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p999']:.2f} "
          f"| {f(r.get('hw_p50'))} | {f(r.get('hw_p99'))} | {r['cpu_us']:.1f} | {f(r.get('sink_cpu_us'))} "
          f"| {r['ok']} | {r['at_sink'] if hw else '–'} | {r['other'] + r['errors']} |")
for r in runs:
    if r["round"] == 0:
        row(r)
# The interleaved runs: the median of the rounds per server.
rounds = sorted({r["round"] for r in runs if r["round"] > 0})
servers, scenarios = [], []
for r in runs:
    if r["round"] > 0 and r["server"] not in servers:
        servers.append(r["server"])
    if r["round"] > 0 and r["scenario"] not in scenarios:
        scenarios.append(r["scenario"])
for sc, s in [(sc, s) for sc in scenarios for s in servers]:
    rs = [r for r in runs if r["server"] == s and r["scenario"] == sc and r["round"] > 0]
    if not rs:
        continue
    med = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "p999", "cpu_us")}
    for k in ("hw_p50", "hw_p99", "sink_cpu_us"):
        vals = [r[k] for r in rs if r.get(k) is not None]
        med[k] = statistics.median(vals) if vals else None
    med.update(server=s, scenario=sc, conns=64, ok=sum(r["ok"] for r in rs),
               other=sum(r["other"] for r in rs), errors=sum(r["errors"] for r in rs),
               at_sink=sum(r.get("at_sink", 0) for r in rs))
    row(med, f"{s} (median of {len(rs)})")

print()
print(f"hookwire ÷ anchor at 64 connections, interleaved; median of {len(rounds)} pairs (each pair: one round):")
print()
print("| anchor | scenario | req/s ratio | CPU/req ratio | req/s ratio per pair | CPU/req ratio per pair |")
print("|---|---|---|---|---|---|")
by_sc = {(r["server"], r["scenario"], r["round"]): r for r in runs if r["round"] > 0}
by = {(s, n): r for (s, sc, n), r in by_sc.items() if sc == "get"}
for sc, s in [(sc, s) for sc in scenarios for s in servers]:
    if s == "hookwire":
        continue
    pairs = [(by_sc[("hookwire", sc, n)], by_sc[(s, sc, n)]) for n in rounds
             if ("hookwire", sc, n) in by_sc and (s, sc, n) in by_sc]
    # A CPU figure of 0 ticks (runs far too short) gives no ratio.
    ratio = lambda a, b: a / b if b else None
    rps = [ratio(h["rps"], a["rps"]) for h, a in pairs]
    cpu = [ratio(h["cpu_us"], a["cpu_us"]) for h, a in pairs]
    med = lambda xs: f"{statistics.median(xs):.2f}" if xs and None not in xs else "–"
    each = lambda xs: " ".join("–" if x is None else f"{x:.2f}" for x in xs)
    label = {"nginx": "nginx `return 200`", "nginx-log": "nginx + JSON access log (buffer=64k)",
             "floor": "bare glommio loop (floor)"}[s]
    print(f"| {label} | {names[sc]} | {med(rps)} | {med(cpu)} | {each(rps)} | {each(cpu)} |")
# Issue 5's targets for the GET postback at 64 connections, read off the
# interleaved rounds above (reported, not enforced: only a lost event fails).
def pair_median(anchor, key, server="hookwire", sc="get"):
    xs = [by_sc[(server, sc, n)][key] / by_sc[(anchor, sc, n)][key] for n in rounds
          if (server, sc, n) in by_sc and (anchor, sc, n) in by_sc and by_sc[(anchor, sc, n)][key]]
    return statistics.median(xs) if xs else None
def p99(server):
    xs = [by[(server, n)]["p99"] for n in rounds if (server, n) in by]
    return statistics.median(xs) if xs else None
# The last column puts the floor (the same glommio loop with no parsing and
# no delivery) to the same test: what this design costs on this machine
# before hookwire does any work.
targets = [
    ("requests/s ≥ 1.0× nginx `return 200`", *(pair_median("nginx", "rps", s) for s in ("hookwire", "floor")),
     lambda x: x >= 1.0, "{:.2f}×"),
    ("requests/s ≥ 1.0× nginx + JSON access log",
     *(pair_median("nginx-log", "rps", s) for s in ("hookwire", "floor")), lambda x: x >= 1.0, "{:.2f}×"),
    ("CPU per request ≤ nginx `return 200`'s", *(pair_median("nginx", "cpu_us", s) for s in ("hookwire", "floor")),
     lambda x: x <= 1.0, "{:.2f}×"),
    ("p99 (oha) ≤ 2 ms", p99("hookwire"), p99("floor"), lambda x: x <= 2.0, "{:.2f} ms"),
    ("a connection each: CPU per request ≤ 1.2× nginx `return 200`'s",
     *(pair_median("nginx", "cpu_us", s, "close") for s in ("hookwire", "floor")), lambda x: x <= 1.2, "{:.2f}×"),
    ("a connection each: requests/s ≥ 0.9× nginx `return 200`",
     *(pair_median("nginx", "rps", s, "close") for s in ("hookwire", "floor")), lambda x: x >= 0.9, "{:.2f}×"),
]
print()
print("| target (GET postback, 64 connections) | measured | met | the floor on the same test |")
print("|---|---|---|---|")
for name, value, floor_value, ok, fmt in targets:
    shown = "–" if value is None else fmt.format(value)
    met = "–" if value is None else ("yes" if ok(value) else "no")
    floor_shown = "–" if floor_value is None else fmt.format(floor_value)
    print(f"| {name} | {shown} | {met} | {floor_shown} |")
if log_lines:
    served = sum(r["ok"] for r in runs if r["server"] == "nginx-log")
    print()
    print(f"nginx JSON access log: {log_lines} lines for {served} 200s and 1 readiness probe")

total_ok = sum(r["ok"] for r in runs if r["server"] == "hookwire")
total_sink = sum(r.get("at_sink", 0) for r in runs if r["server"] == "hookwire")
print()
print(f"hookwire: {total_ok} responses with 200; {total_sink} distinct envelopes at the sink over {sum(1 for r in runs if r['server'] == 'hookwire')} runs")
if failures:
    print()
    for x in failures:
        print("FAIL:", x)
    sys.exit(1)
print("every event that got a 200 reached the sink, valid and once")
EOF
