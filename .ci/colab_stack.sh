#!/usr/bin/env bash
# Colab's stack: install the versions Google Colab preinstalls
# (.ci/colab-constraints.txt) into a fresh venv, check that installing sacbook
# and sacbook[test] there would change none of them, then run the unit tests and
# the widget chapters under nbval on that stack.
# Fails on any error. Called by .ci/run; runs on its own too, from any shell.
#
#   bash .ci/colab_stack.sh            # everything, in a temporary folder
#   COLAB_STACK_DIR=DIR bash .ci/colab_stack.sh prepare   # the venv and checks only
#   COLAB_STACK_DIR=DIR bash .ci/colab_stack.sh test      # the tests, in DIR's venv
#
# (.ci/run prepares while the main tests run: installing is mostly waiting.)
set -euo pipefail
cd "$(dirname "$0")/.."
constraints=.ci/colab-constraints.txt
start=$(date +%s)
t0=$start
phase() { echo "colab stack: $1 took $(( $(date +%s) - t0 )) s"; t0=$(date +%s); }

# shellcheck source=.ci/stack_setup.sh
. .ci/stack_setup.sh
stack_setup "colab stack" COLAB_STACK_DIR "${1:-all}"

if [ "$mode" != test ]; then

# Python 3.12, as on Colab, when this machine has one; else python3.
py=""
if command -v pyenv >/dev/null 2>&1; then
  for cand in "$(pyenv root)"/versions/3.12*/bin/python; do
    if [ -x "$cand" ]; then py=$cand; fi
  done
fi
if [ -z "$py" ] && python3.12 -c "" >/dev/null 2>&1; then py=$(command -v python3.12); fi
if [ -z "$py" ]; then
  py=$(command -v python3)
  echo "colab stack: no Python 3.12 found, using python3 instead"
fi
echo "colab stack: Python $("$py" -c 'import platform; print(platform.python_version())') ($py)"

"$py" -m venv "$tmp/venv"
# shellcheck disable=SC1091
. "$tmp/venv/bin/activate"
python -m pip install --quiet "$(grep -E '^pip==' "$constraints")"
python -m pip install --quiet -r "$constraints"
phase "installing Colab's pinned versions"

# Fail if installing SPEC would change any pinned package; one line per package.
check() {  # check SPEC LABEL
  rm -f "$tmp/report.json"
  python -m pip install --dry-run --quiet --report "$tmp/report.json" -e "$1" || return 1
  python - "$constraints" "$tmp/report.json" "$2" <<'EOF'
import json, re, sys

def name(n):
    return re.sub(r"[-_.]+", "-", n).lower()

pins = {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if "==" in line:
        n, v = line.split("==", 1)
        pins[name(n)] = v.strip()
changed = []
for item in json.load(open(sys.argv[2]))["install"]:
    n, v = name(item["metadata"]["name"]), item["metadata"]["version"]
    if n in pins and v != pins[n]:
        changed.append(f"colab stack: installing {sys.argv[3]} would change {n} {pins[n]} -> {v}")
print("\n".join(changed) or f"colab stack: installing {sys.argv[3]} changes no pinned package")
sys.exit(1 if changed else 0)
EOF
}
ok=1
check . sacbook || ok=0
check ".[test]" "sacbook[test]" || ok=0
[ "$ok" = 1 ]
phase "dry-run checks"

python -m pip install --quiet -e ".[test]" -c "$constraints"
phase "installing sacbook[test]"
fi  # prepare
[ "$mode" = prepare ] && { echo "colab stack: prepared in $(( $(date +%s) - start )) s"; exit 0; }
# shellcheck disable=SC1091
. "$tmp/venv/bin/activate"
rc=0
# The unit tests (less the long end-to-end runs marked slow, which the main
# stack runs), and the chapters whose widgets and display depend on Colab's
# IPython and ipywidgets. Chapters 3, 4 and the appendix use the package APIs
# the unit tests cover here; executing them a second time would add about ten
# minutes to CI. So do the runner's and the command line's tests
# (tests/test_train.py, tests/test_cli.py): host-side orchestration, files and
# subprocesses over the compiled programs that the other tests check here,
# each costing compiles; on Colab's stack, tests/multidevice.py still trains
# several seeds on a sharded mesh.
python -m pytest -m "not slow" --ignore=tests/test_cli.py --ignore=tests/test_train.py \
  tests book/01_physics.ipynb book/02_networks.ipynb || rc=$?
phase "python -m pytest (unit tests, Chapters 1-2)"
if [ "$rc" != 0 ]; then
  echo "colab stack: FAILED (pytest exit status $rc) after $(( $(date +%s) - start )) s"
  exit "$rc"
fi
echo "colab stack: passed in $(( $(date +%s) - start )) s"
