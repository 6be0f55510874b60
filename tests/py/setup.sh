#!/usr/bin/env bash
# Makes the tests' Python environment: a venv with tests/py/requirements.txt,
# in $CARGO_TARGET_DIR/py (or target/py). Prints the interpreter's path.
# Re-running is cheap: pip runs only when the requirements changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$here/../../target}"
venv="$target/py"
req="$here/requirements.txt"
mkdir -p "$target"
exec 9>"$target/py.lock"
flock 9
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
if ! cmp -s "$req" "$venv/requirements.done"; then
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
    cp "$req" "$venv/requirements.done"
fi
echo "$venv/bin/python"
