#!/usr/bin/env bash
# A/B of hookwire configurations: the same GET postback load against each
# variant, interleaved (A B C, then C B A, …), every envelope counted at a
# ZeroMQ sink; prints each variant's median throughput (200s ÷ elapsed:
# other answers do not count), CPU per 200, latency, non-200 share, and its
# ratio to the first variant per round (median).
#
#   loadtest/ab.sh [-n REQUESTS] [-c CONNS] [-r ROUNDS] VARIANT...
#
# A VARIANT is `name;hookwire options;oha options;sink;binary`, all but the
# name optional: `sink` is `tcp` (default) or `ipc` (the sink binds a Unix
# socket and hookwire pushes to it); `binary` is another hookwire build to
# run (default: this tree's target/release/hookwire). Examples:
#
#   loadtest/ab.sh 'cores2;--cores 2' 'cores1;--cores 1'
#   loadtest/ab.sh 'tcp' 'ipc;;;ipc'
#   loadtest/ab.sh 'keepalive' 'no-keepalive;;--disable-keepalive'
#   loadtest/ab.sh 'accepted' 'durable;--ack durable'
#   loadtest/ab.sh 'new' 'old;;;;/tmp/hookwire-old'    # two builds
#
# Loopback only; each oha run is a fixed request count under a time bound,
# and every process started here is stopped by its PID. Exits non-zero if
# any event that got a 200 is missing at the sink, or if a run of a
# variant got more than 0.1% answers other than 200 (or failed requests):
# its figures would then measure refusals, not the work.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/lib.sh
. loadtest/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"

requests=100000 conns=64 rounds=3
while getopts "n:c:r:" opt; do
    case $opt in
        n) requests=$OPTARG ;;
        c) conns=$OPTARG ;;
        r) rounds=$OPTARG ;;
        *) sed -n '2,26p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,26p' "$0" >&2; exit 2; }
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet --bin hookwire --example sink
out=${CARGO_TARGET_DIR:-target}/release
bin=$out/hookwire
sink=$out/examples/sink
target=$(head -1 bench/samples/affise_get.http | cut -d' ' -f2)

work=$(mktemp -d "${TMPDIR:-/tmp}/hookwire-ab.XXXXXX")
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
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
stop() { # pid seconds
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}

run() { # id name hookwire-args oha-args sink-kind binary
    local id=$1 hw_args=$3 oha_args=$4 kind=${5:-tcp} exe=${6:-$bin} endpoint http admin sink_pid hw_pid before
    local zp
    read -r zp http admin <<<"$(free_ports 3)"
    if [ "$kind" = ipc ]; then endpoint="ipc://$work/$id.sock"; else endpoint="tcp://127.0.0.1:$zp"; fi
    "$sink" --bind "$endpoint" --max-seconds 600 >"$work/$id.sink" 2>/dev/null &
    sink_pid=$!; pids+=("$sink_pid")
    # shellcheck disable=SC2086
    "$exe" --listen "127.0.0.1:$http" --admin "127.0.0.1:$admin" --push "$endpoint" \
        --spool-dir "$work/$id.spool" $hw_args 2>"$work/$id.err" &
    hw_pid=$!; pids+=("$hw_pid")
    for _ in $(seq 100); do
        kill -0 "$hw_pid" 2>/dev/null || { echo "hookwire ($2) exited at start: $(cat "$work/$id.err")" >&2; exit 1; }
        python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$admin/ready', timeout=1)" 2>/dev/null && break
        sleep 0.1
    done
    before=$(cpu_ticks "$hw_pid")
    # shellcheck disable=SC2086
    timeout 300 oha --no-tui --output-format json -n "$requests" -c "$conns" $oha_args \
        "http://127.0.0.1:$http$target" >"$work/$id.oha"
    echo $(($(cpu_ticks "$hw_pid") - before)) >"$work/$id.cpu"
    stop "$hw_pid" 30
    stop "$sink_pid" 20
    rm -rf "$work/$id.spool" "$work/$id.sock"
}

order=("$@")
for round in $(seq "$rounds"); do
    for spec in "${order[@]}"; do
        IFS=';' read -r name hw oha kind exe <<<"$spec"
        echo "round $round: $name" >&2
        run "$round.$name" "$name" "${hw:-}" "${oha:-}" "${kind:-tcp}" "${exe:-}"
        echo "$round $name" >>"$work/manifest"
    done
    # Reverse the order every round, so no variant always runs first.
    reversed=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do reversed+=("${order[i]}"); done
    order=("${reversed[@]}")
done

python3 - "$work" "$(getconf CLK_TCK)" "$@" <<'EOF'
import json, os, statistics, sys
work, tck, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
names = [s.split(";")[0] for s in specs]
runs, failed = {}, False
MAX_OTHER = 0.001  # the non-200 share above which a run fails
for line in open(os.path.join(work, "manifest")):
    rnd, name = line.split()
    rid = f"{rnd}.{name}"
    o = json.load(open(os.path.join(work, rid + ".oha")))
    codes = {k: int(v) for k, v in o["statusCodeDistribution"].items()}
    errors = {k: int(v) for k, v in o.get("errorDistribution", {}).items()}
    ok = codes.get("200", 0)
    attempts = sum(codes.values()) + sum(errors.values())
    other = attempts - ok
    share = other / max(attempts, 1)
    if attempts == 0 or share > MAX_OTHER:
        failed = True
        print(f"FAIL {name} (round {rnd}): {other} of {attempts} requests not answered 200 "
              f"({share:.2%}, limit {MAX_OTHER:.1%}): statuses {codes}, errors {errors}",
              file=sys.stderr)
    sink = json.loads(open(os.path.join(work, rid + ".sink")).read().strip().splitlines()[-1])
    if sink["unique"] != ok or sink["invalid"] or sink["duplicates"]:
        failed = True
        print(f"LOST OR BAD EVENTS in {rid}: {ok} 200s, sink {sink}", file=sys.stderr)
    cpu = int(open(os.path.join(work, rid + ".cpu")).read()) / tck * 1e6 / max(ok, 1)
    lat = o["latencyPercentiles"]
    runs.setdefault(name, {})[rnd] = dict(rps=ok / o["summary"]["total"], cpu=cpu,
        p50=lat["p50"] * 1e3, p99=lat["p99"] * 1e3, ok=ok, other=other, attempts=attempts)
base = names[0]
med = lambda xs: statistics.median(xs)
ratio = lambda a, b: a / b if b else float("nan")
print(f"| variant | 200s/s | CPU µs/200 | p50 ms | p99 ms | non-200 | 200s/s ÷ {base} | CPU ÷ {base} | 200s = at sink |")
print("|---|---|---|---|---|---|---|---|---|")
for n in names:
    r = runs[n]
    rounds = sorted(r)
    rr = [ratio(r[k]["rps"], runs[base][k]["rps"]) for k in rounds]
    cr = [ratio(r[k]["cpu"], runs[base][k]["cpu"]) for k in rounds]
    other = sum(r[k]["other"] for k in rounds) / max(sum(r[k]["attempts"] for k in rounds), 1)
    print(f"| {n} | {med([r[k]['rps'] for k in rounds]):,.0f} | {med([r[k]['cpu'] for k in rounds]):.1f} "
          f"| {med([r[k]['p50'] for k in rounds]):.2f} | {med([r[k]['p99'] for k in rounds]):.2f} "
          f"| {other:.2%} | {med(rr):.2f} | {med(cr):.2f} | {sum(r[k]['ok'] for k in rounds)} |".replace(",", " "))
sys.exit(1 if failed else 0)
EOF
