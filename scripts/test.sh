#!/usr/bin/env bash
# Run the test suite (sets up .venv first). Extra arguments go to pytest.
# pytest's exit code 5 (no tests collected) is a failure here, never a pass.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$code"
