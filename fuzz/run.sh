#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS each (default 60) on its
# corpus in fuzz/corpus/<target>/, one process at a time, and prints per
# target: executions, coverage (libFuzzer's cov: edges; ft: features),
# corpus size and crashes (artifacts in fuzz/artifacts/<target>/).
# Exits non-zero if any target crashed, hung or ran out of memory.
#
# New inputs go to a working corpus beside the build (FUZZ_WORK), so the
# committed seeds stay small. FUZZ_KEEP_GOING=1 runs each target forked,
# past crashes and hangs (each saved), for long runs.
#
#   fuzz/run.sh [SECONDS]        FUZZ_TARGETS="conn form" fuzz/run.sh 30
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-../target}/fuzz}
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
work=${FUZZ_WORK:-$target_dir/corpus}
keep_going=()
[ "${FUZZ_KEEP_GOING:-0}" = 1 ] && keep_going=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# -a: debug assertions (overflow checks and the code's own
# debug_assert!s) on, as in the tests.
cargo +nightly fuzz build -a --target-dir "$target_dir" >"$logs/build" 2>&1 || {
    cat "$logs/build"
    exit 2
}

bin="$target_dir/x86_64-unknown-linux-gnu/release"
# A core's state is made once per process and kept: not a leak.
export ASAN_OPTIONS=detect_leaks=0
failed=0
rows=()
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t" "$work/$t"
    before=$(ls "artifacts/$t" | wc -l)
    # -timeout: one input that takes longer is a hang, saved as an artifact.
    timeout $((secs + 120)) "$bin/$t" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -detect_leaks=0 -dict=http.dict -print_final_stats=1 \
        "${keep_going[@]}" -artifact_prefix="artifacts/$t/" "$work/$t" "corpus/$t" >"$logs/$t" 2>&1
    rc=$?
    after=$(ls "artifacts/$t" | wc -l)
    crashes=$((after - before))
    [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes="exit $rc"
    execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$logs/$t" | grep -oE '[0-9]+$' || true)
    last=$(grep -E '^#[0-9]+:?[[:space:]].*cov: ' "$logs/$t" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
    [ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' <<<"$last" | tr -d '#')
    corp=$(ls "$work/$t" | wc -l)
    if [ "$crashes" != 0 ]; then
        failed=1
        echo "== $t: crashed; its log ends:" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|Base64' "$logs/$t" | head -20 >&2
    fi
    rows+=("$(printf '| %-8s | %5s | %10s | %6s | %6s | %6s | %7s |' "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corp" "$crashes")")
done

echo '| target   | s     | executions | cov    | ft     | corpus | crashes |'
echo '|----------|-------|------------|--------|--------|--------|---------|'
printf '%s\n' "${rows[@]}"
exit $failed
