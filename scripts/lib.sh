# Shared by the setup scripts (sourced, not run).

# The Python 3.11 interpreter to build environments with: $PYTHON, python3.11 or python3.
pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "vlmix needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}
