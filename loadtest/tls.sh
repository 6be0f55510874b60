#!/usr/bin/env bash
# HTTPS CPU per request, one core each, side by side: nginx `ssl` (one
# worker, `return 200`) and hookwire `--cores 1 --tls-cert` with a ZeroMQ
# sink, the same ECDSA P-256 certificate, TLS 1.3 and 1.2 with the same
# cipher suites and key exchange groups on both. GET postback (bench/samples'
# Affise GET) two ways: keep-alive (64 connections) and a handshake per
# request (16 connections, each request on a new one: `oha
# --disable-keepalive`, wrk with `Connection: close`). `wrk -t1` (the
# lighter client) and `oha --insecure`, interleaved rounds (order reversed
# every other round). CPU from /proc/PID/stat, every thread.
#
#   loadtest/tls.sh [-r ROUNDS] [-d SECONDS] [-p PORT]
#
# Ports: PORT upwards (default: free ones). Loopback only; each run is
# time-bounded, every process started here is stopped by its PID. Prints
# the negotiated protocol and suite of each server, whether hookwire's
# connections got kernel TLS, and a markdown table; exits non-zero if a
# hookwire 200 is missing at its sink or any server answered other than 200.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

rounds=3 secs=5 base_port=
while getopts "r:d:p:" opt; do
    case $opt in
        r) rounds=$OPTARG ;;
        d) secs=$OPTARG ;;
        p) base_port=$OPTARG ;;
        *) sed -n '2,19p' "$0" >&2; exit 2 ;;
    esac
done

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } >&2
command -v oha >/dev/null || cargo install oha --locked
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light; } >&2
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; } >&2
target=${CARGO_TARGET_DIR:-target}
echo "building release…" >&2
cargo build --release --quiet --bin hookwire --example sink
bin=$target/release/hookwire
sink=$target/release/examples/sink

# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
work_dir tls
target_path=$(head -1 bench/samples/affise_get.http | cut -d' ' -f2)

# One certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/key.pem" -out "$work/cert.pem" -days 30 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null

names=() urls=() spids=()
add() { names+=("$1"); urls+=("$2"); spids+=("$3"); }

# nginx: rustls's suites and groups, in its order, server preference.
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
        listen 127.0.0.1:$p ssl reuseport backlog=4096;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256;
        ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_prefer_server_ciphers on;
        ssl_session_tickets on;
        ssl_session_cache shared:SSL:10m;
        location / {
            default_type application/json;
            return 200 '{"key":"in.gen.affise.conversion","id":"7532420803820785665"}';
        }
    }
}
EOF
nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>"$d/stderr" &
nginx_master=$!; pids+=("$nginx_master")
wait_ok "https://127.0.0.1:$p/"
add nginx-ssl "https://127.0.0.1:$p" "$nginx_master $(pgrep -P "$nginx_master" | tr '\n' ' ')"

port; zp=$P; port; hp=$P; port; ap=$P
"$sink" --bind "tcp://127.0.0.1:$zp" --max-seconds 3600 >"$work/sink.json" 2>/dev/null &
sink_pid=$!; pids+=("$sink_pid")
"$bin" --listen "127.0.0.1:$hp" --admin "127.0.0.1:$ap" --push "tcp://127.0.0.1:$zp" \
    --cores 1 --spool-dir "$work/spool" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    2>"$work/hookwire.err" &
hw_pid=$!; pids+=("$hw_pid")
for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ap/ready" || true)" = 200 ] && break
    sleep 0.1
done
add hookwire-tls "https://127.0.0.1:$hp" "$hw_pid"

for i in 0 1; do
    hostport=${urls[$i]#https://}
    for v in -tls1_3 -tls1_2; do
        echo "${names[$i]} $v: $(openssl s_client -connect "$hostport" "$v" </dev/null 2>/dev/null | grep -m1 '^New,')"
    done
done

# name mode tool round -> "$work/NAME.MODE.TOOL.ROUND": requests cpu_ticks non200 secs
measure() {
    local i=$1 mode=$2 tool=$3 round=$4 before after out n bad
    local url="${urls[$i]}$target_path"
    # shellcheck disable=SC2086
    before=$(ticks ${spids[$i]})
    if [ "$tool" = wrk ]; then
        if [ "$mode" = keepalive ]; then
            out=$(timeout $((secs + 30)) wrk -t1 -c64 -d"${secs}s" "$url")
        else
            out=$(timeout $((secs + 30)) wrk -t1 -c16 -d"${secs}s" -H "Connection: close" "$url")
        fi
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        bad=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    else
        if [ "$mode" = keepalive ]; then
            out=$(timeout $((secs + 30)) oha --no-tui --insecure --output-format json -c 64 -z "${secs}s" "$url")
        else
            out=$(timeout $((secs + 30)) oha --no-tui --insecure --disable-keepalive --output-format json -c 16 -z "${secs}s" "$url")
        fi
        n=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["statusCodeDistribution"].get("200",0))')
        bad=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(v for k,v in d["statusCodeDistribution"].items() if k!="200")+sum(v for k,v in d.get("errorDistribution",{}).items() if "deadline" not in k))')
    fi
    # shellcheck disable=SC2086
    after=$(ticks ${spids[$i]})
    echo "$n $((after - before)) ${bad:-0} $secs" >"$work/${names[$i]}.$mode.$tool.$round"
}
order="0 1"
for round in $(seq "$rounds"); do
    for mode in keepalive handshake; do
        for tool in wrk oha; do
            seq_=$order
            [ $((round % 2)) = 0 ] && seq_="1 0"
            for i in $seq_; do
                echo "round $round $mode $tool ${names[$i]}" >&2
                measure "$i" "$mode" "$tool" "$round"
            done
        done
    done
done

metrics=$(curl -s "http://127.0.0.1:$ap/metrics")
echo "$metrics" | grep -E '^hookwire_tls_connections_total\{core="all"' || true
kill -TERM "$hw_pid"; for _ in $(seq 300); do kill -0 "$hw_pid" 2>/dev/null || break; sleep 0.1; done
kill -TERM "$sink_pid"; for _ in $(seq 300); do kill -0 "$sink_pid" 2>/dev/null || break; sleep 0.1; done
grep -m1 "kernel TLS unavailable" "$work/hookwire.err" || true

python3 - "$work" "$rounds" "$(getconf CLK_TCK)" "${names[@]}" <<'EOF'
import json, statistics, sys
work, rounds, hz, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
med = statistics.median
ok = True
rows = {}
for name in names:
    for mode in ("keepalive", "handshake"):
        for tool in ("wrk", "oha"):
            rs = []
            for r in range(1, rounds + 1):
                n, t, bad, s = open(f"{work}/{name}.{mode}.{tool}.{r}").read().split()
                rs.append((int(n), int(t), int(bad), float(s)))
            if any(b for _, _, b, _ in rs):
                print(f"FAIL: {name} {mode} {tool}: answers other than 200")
                ok = False
            rows[(name, mode, tool)] = rs
print(f"\n{rounds} interleaved rounds of {rounds and rs[0][3]:.0f} s; one core each; "
      "keep-alive: 64 connections; handshake per request: 16 connections.\n")
print("| run | client | nginx ssl µs/request | hookwire µs/request | hookwire ÷ nginx | nginx requests/s | hookwire requests/s |")
print("|---|---|---|---|---|---|---|")
for mode in ("keepalive", "handshake"):
    for tool in ("wrk", "oha"):
        ng = rows[(names[0], mode, tool)]
        hw = rows[(names[1], mode, tool)]
        us = lambda rs: [t * 1e6 / hz / n for n, t, _, _ in rs]
        rps = lambda rs: [n / s for n, _, _, s in rs]
        ratio = med([a / b for a, b in zip(us(hw), us(ng))])
        label = "keep-alive" if mode == "keepalive" else "handshake per request"
        print(f"| {label} | {tool} | {med(us(ng)):.1f} | {med(us(hw)):.1f} | {ratio:.2f} "
              f"| {med(rps(ng))/1000:.1f}k | {med(rps(hw))/1000:.1f}k |")
d = json.load(open(f"{work}/sink.json"))
sent = sum(n for (name, _, _), rs in rows.items() if name == names[1] for n, _, _, _ in rs)
got = d["unique"]
flag = "" if got >= sent and d["invalid"] == 0 and d["duplicates"] == 0 else "  FAIL"
ok = ok and not flag
print(f"\nhookwire: sink received {got} unique envelopes for {sent} 200s, invalid {d['invalid']}, duplicates {d['duplicates']}{flag}")
sys.exit(0 if ok else 1)
EOF
