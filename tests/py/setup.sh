#!/usr/bin/env bash
# Makes the tests' Python environment: a venv with tests/py/requirements.txt,
# in $CARGO_TARGET_DIR/py (or target/py). Prints the interpreter's path.
# Re-running is cheap: pip runs only when the requirements changed.
#
#   tests/py/setup.sh                          # the base venv
#   tests/py/setup.sh tests/py/requirements-chdb.txt
#       # a venv of its own (py-chdb) with the base requirements and that
#       # file's: heavy packages only the tests that need them install
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$here/../../target}"
venv="$target/py"
req="$here/requirements.txt"
extra="${1:-}"
if [ -n "$extra" ]; then
    name="$(basename "$extra" .txt)"
    venv="$target/py-${name#requirements-}"
fi
mkdir -p "$target"
exec 9>"$target/py.lock"
flock 9
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
want="$(cat "$req" ${extra:+"$extra"})"
if [ "$want" != "$(cat "$venv/requirements.done" 2>/dev/null)" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" ${extra:+-r "$extra"} >&2
    printf '%s' "$want" > "$venv/requirements.done"
fi
echo "$venv/bin/python"
