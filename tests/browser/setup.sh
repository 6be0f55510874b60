#!/usr/bin/env bash
# Installs the browser tests/browser.rs drives: Debian's headless-capable
# Chromium at /usr/bin/chromium (never a downloaded build). Prints its path.
# Re-running is cheap: apt runs only when it is missing.
set -euo pipefail
bin=/usr/bin/chromium
if [ ! -x "$bin" ]; then
    here="$(cd "$(dirname "$0")" && pwd)"
    target="${CARGO_TARGET_DIR:-$here/../../target}"
    mkdir -p "$target"
    # One install at a time, whichever test or script asks first.
    exec 9>"$target/chromium.lock"
    flock 9
    if [ ! -x "$bin" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends chromium fonts-liberation >&2
    fi
fi
"$bin" --version >&2
echo "$bin"
