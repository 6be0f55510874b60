#!/usr/bin/env bash
# A soak: the real hookwire under a moderate mixed load for MINUTES
# (default 60) on loopback, consumers stopped and started every few
# minutes, a SIGTERM and restart halfway (loadtest/soak.py). Fails if RSS
# grows by more than 10% after warm-up, descriptors leak, or a 200 is
# missing at the consumers. Leaves samples.json and soak.png in
# SOAK_OUT (default a temp dir, printed).
#
#   loadtest/soak.sh [MINUTES]        SOAK_OUT=/tmp/soak SOAK_CORES=2 ...
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
minutes=${1:-60}
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet --bin hookwire --example sink
target=${CARGO_TARGET_DIR:-target}
py=$(tests/py/setup.sh loadtest/requirements-soak.txt)
out=${SOAK_OUT:-$(mktemp -d)}
echo "soak: $minutes min; results in $out" >&2
timeout $((${minutes%.*} * 60 + 900)) "$py" loadtest/soak.py "$minutes" \
    --bin "$target/release/hookwire" --sink "$target/release/examples/sink" \
    --oha "$(command -v oha)" --out "$out" --cores "${SOAK_CORES:-$(nproc)}"
