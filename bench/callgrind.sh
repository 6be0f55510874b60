#!/usr/bin/env bash
# Instructions per event on the request path (inside Conn::process), from
# callgrind: each sample runs through the `count` bench twice, with 1000 and
# 3000 events, and the difference is divided by 2000. Deterministic for one
# binary, so two builds compare exactly. Needs valgrind.
#
#   bench/callgrind.sh [SAMPLE...]          # builds and runs this checkout
#   COUNT_BIN=path/to/count bench/callgrind.sh   # a count binary built elsewhere
#   STAGE=decode bench/callgrind.sh SAMPLE...    # only the body's decode and merge,
#                                                # beside simd-json's to_tape alone
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${COUNT_BIN:-}
if [ -z "$bin" ]; then
    bin=$(cargo bench --bench count --no-run --message-format=json 2>/dev/null |
        grep '"name":"count"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
fi
samples=${*:-affise_get seed_get_path seed_get_query seed_json seed_form amocrm_form_1k webhook_json_4k}
ir() { # toggle sample n [stage]
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect="$1" \
        --callgrind-out-file="$out" "$bin" --bench "$2" "$3" ${4:+--stage "$4"} >/dev/null 2>&1
    grep -m1 '^summary:' "$out" | awk '{print $2}'
    rm -f "$out"
}
per_event() { # toggle sample [stage]
    local a b
    a=$(ir "$1" "$2" 1000 "${3:-}")
    b=$(ir "$1" "$2" 3000 "${3:-}")
    echo $(((b - a) / 2000))
}
for s in $samples; do
    if [ "${STAGE:-}" = decode ]; then
        d=$(per_event '*decode_pass*' "$s" decode)
        f=$(per_event '*floor_pass*' "$s" floor)
        echo "$s decode+merge $d floor $f ratio $(python3 -c "print(f'{$d / $f:.2f}')")"
    else
        echo "$s $(per_event '*Conn*process*' "$s")"
    fi
done
