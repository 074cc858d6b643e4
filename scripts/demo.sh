#!/usr/bin/env bash
# The main job on generated sample data (sets up .venv first). Arguments go to `demo`
# (e.g. --model /path/to/Depth-Anything-V2-Small-hf, --frames 20).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/demo "$@"
