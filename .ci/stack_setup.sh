# Sourced by colab_stack.sh and floors_stack.sh, which each test sacbook on a
# stack of their own in a fresh venv:
#   stack_setup NAME DIR_VARIABLE MODE
# leaves the caller's venv (the main CI venv) behind, so that the new one sees
# only its own packages; checks MODE (all, prepare or test; sets $mode) and
# sets $tmp to the stack's folder: the one DIR_VARIABLE names, or for "all" a
# temporary folder removed at exit.
stack_setup() {
  local name=$1 dir_variable=$2
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$VIRTUAL_ENV/bin" \
      | paste -sd: -)
    unset VIRTUAL_ENV
  fi
  unset PYTHONPATH PYTHONHOME
  mode=${3:-all}
  case "$mode" in
    all | prepare | test) ;;
    *) echo "usage: $(basename "$0") [all|prepare|test]" >&2; exit 2 ;;
  esac
  if [ -n "${!dir_variable:-}" ]; then
    tmp=${!dir_variable}
    mkdir -p "$tmp"
  else
    [ "$mode" = all ] || { echo "$name: $mode needs $dir_variable" >&2; exit 2; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
  fi
}
