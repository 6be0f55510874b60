# Shared by the load scripts (sourced; cpu.sh and tls.sh set `base_port` first): a work
# directory removed on exit with every process started (PIDs in `pids`),
# ports, CPU ticks and readiness.
#
#   work_dir NAME    makes $work and sets the cleanup trap

pids=()
work_dir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/hookwire-$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

next=${base_port:-0}
# Sets P to the next port (not in a subshell, so the count goes on).
# free_ports N: N distinct free loopback ports, picked while all are held
# (ports picked one at a time, each freed before the next pick, can repeat).
free_ports() {
    python3 -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])' "$1"
}
given=" "
port() {
    if [ "$next" = 0 ]; then
        # A free port not handed out before: one freed a moment ago can be
        # picked again while its first taker has not bound it yet.
        P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        while [[ $given == *" $P "* ]]; do
            P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        done
        given+="$P "
    else
        P=$next; next=$((next + 1))
    fi
}
ticks() { # utime+stime of every thread of the given PIDs
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
wait_ok() { # url: a 200 within 10 s (HTTPS: any certificate)
    for _ in $(seq 100); do
        [ "$(curl -sk -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.1
    done
    echo "no 200 from $1" >&2; return 1
}
