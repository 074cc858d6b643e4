#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment at .venv/ without a ROS install.
#
# Order matters: torch is pinned and installed first, because any unpinned torch requirement
# pulls several GB of CUDA packages. Every later install is checked against the pin.
# Re-running is fast: pip skips what is already satisfied, and a stamp of this file's hash
# skips pip altogether when nothing changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DEPTH_NODE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
torch_pin="torch==2.13.0"

stamp="$venv/.depth_node_setup"
want="$(cat "$root/scripts/setup.sh" "$root/scripts/requirements.txt" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip wheel
"${pip[@]}" install "$torch_pin"
# The constraint keeps every later resolver from replacing the pinned torch.
constraint="$(mktemp)"
trap 'rm -f "$constraint"' EXIT
echo "$torch_pin" > "$constraint"
"${pip[@]}" install -c "$constraint" -r "$root/scripts/requirements.txt"
# The official Depth Anything V2 code, used only as a reference in tests. --no-deps: it
# declares torchvision, whose wheels do not import with this CPU torch.
"${pip[@]}" install --no-deps jkp-depth-anything-v2==0.1.1
# Type stubs of the TensorRT Python API, for the mypy check of the TensorRT backend. --no-deps:
# they declare tensorrt itself, whose libraries cannot be installed without NVIDIA's index.
"${pip[@]}" install --no-deps tensorrt-stubs==10.13.0.35.1
"${pip[@]}" install --no-deps -e "$root"

have="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
case "$have" in
  2.13.0*) ;;
  *) echo "setup.sh: torch $have was installed instead of $torch_pin" >&2; exit 1 ;;
esac
echo "$want" > "$stamp"
