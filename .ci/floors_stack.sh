#!/usr/bin/env bash
# The floors: install sacbook[test] with each direct dependency at the oldest
# version pyproject.toml admits (.ci/floor-constraints.txt) into a fresh venv,
# then run the unit tests there. Fails on any error. Called by .ci/run; runs
# on its own too, from any shell.
#
#   bash .ci/floors_stack.sh                        # all, in a temporary folder
#   FLOORS_STACK_DIR=DIR bash .ci/floors_stack.sh prepare   # the venv only
#   FLOORS_STACK_DIR=DIR bash .ci/floors_stack.sh test      # the tests there
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# shellcheck source=.ci/stack_setup.sh
. .ci/stack_setup.sh
stack_setup "floors" FLOORS_STACK_DIR "${1:-all}"

if [ "$mode" != test ]; then
  # Python 3.11, the oldest sacbook admits (the floors' wheels are built for it)
  py=python3
  if python3.11 -c "" >/dev/null 2>&1; then py=python3.11; fi
  "$py" -m venv "$tmp/venv"
  # shellcheck disable=SC1091
  . "$tmp/venv/bin/activate"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -c .ci/floor-constraints.txt -e ".[test]"
  python -m pip list 2>/dev/null \
    | grep -iE '^(jax|jaxlib|flax|optax|orbax-checkpoint|numpy) '
  echo "floors: prepared in $(( $(date +%s) - start )) s"
  [ "$mode" = prepare ] && exit 0
fi
# shellcheck disable=SC1091
. "$tmp/venv/bin/activate"
# The unit tests, less the long end-to-end runs (marked slow) and the command
# line's and runner's tests (host-side orchestration over the programs the other
# tests check here), as on Colab's stack: about three minutes on 2 cores.
rc=0
python -m pytest -m "not slow" --ignore=tests/test_cli.py --ignore=tests/test_train.py \
  tests || rc=$?
if [ "$rc" != 0 ]; then
  echo "floors: FAILED (pytest exit status $rc) after $(( $(date +%s) - start )) s"
  exit "$rc"
fi
echo "floors: passed in $(( $(date +%s) - start )) s"
