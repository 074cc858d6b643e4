#!/usr/bin/env bash
# Run the test suite (sets up the venvs first). Extra arguments go to pytest.
#
# Without arguments (what CI runs): the whole suite in .venv (ROS 2 Kilted), then the test files
# marked `jazzy` (conversions, parameters, QoS, the node on a real graph, transport) in
# .venv-jazzy (ROS 2 Jazzy). With arguments: only .venv, unless DEPTH_NODE_DISTROS says which
# (e.g. DEPTH_NODE_DISTROS=jazzy scripts/test.sh test/test_qos.py).
# pytest's exit code 5 (no tests collected) is a failure here, never a pass.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$#" -eq 0 ]; then
  distros="${DEPTH_NODE_DISTROS:-kilted jazzy}"
else
  distros="${DEPTH_NODE_DISTROS:-kilted}"
fi
cd "$root"
status=0
for distro in $distros; do
  case "$distro" in
    kilted) venv=.venv; args=("$@") ;;
    jazzy)
      venv=.venv-jazzy
      if [ "$#" -eq 0 ]; then
        mapfile -t args < <(grep -l '^pytestmark = pytest.mark.jazzy' test/test_*.py)
      else
        args=("$@")
      fi
      args=(-m jazzy "${args[@]}") ;;
    *) echo "test.sh: unknown distro '$distro' (kilted, jazzy)" >&2; exit 2 ;;
  esac
  "$root/scripts/setup.sh" "$distro"
  echo "test.sh: ROS 2 ${distro^} ($venv)"
  set +e
  "$venv/bin/python" -m pytest "${args[@]}"
  code=$?
  set -e
  if [ "$code" -eq 5 ]; then
    echo "test.sh: pytest collected no tests on $distro: failing" >&2
    code=1
  fi
  [ "$code" -eq 0 ] || status=$code
done
exit "$status"
