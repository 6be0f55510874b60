#!/usr/bin/env bash
# Instructions per event on the request path (inside Conn::process), from
# callgrind: each sample runs through the `count` bench twice, with 1000 and
# 3000 events, and the difference is divided by 2000. Deterministic for one
# binary, so two builds compare exactly. Needs valgrind.
#
#   bench/callgrind.sh [SAMPLE...]          # builds and runs this checkout
#   COUNT_BIN=path/to/count bench/callgrind.sh   # a count binary built elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${COUNT_BIN:-}
if [ -z "$bin" ]; then
    bin=$(cargo bench --bench count --no-run --message-format=json 2>/dev/null |
        grep '"name":"count"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
fi
samples=${*:-affise_get seed_get_path seed_get_query seed_json seed_form amocrm_form_1k webhook_json_4k}
ir() {
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*Conn*process*' \
        --callgrind-out-file="$out" "$bin" --bench "$1" "$2" >/dev/null 2>&1
    grep -m1 '^summary:' "$out" | awk '{print $2}'
    rm -f "$out"
}
for s in $samples; do
    a=$(ir "$s" 1000)
    b=$(ir "$s" 3000)
    echo "$s $(((b - a) / 2000))"
done
