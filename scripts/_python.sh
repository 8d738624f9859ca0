# Shared by scripts/start and scripts/test: find a Python >= 3.11 and create .venv with it.
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "netops needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    local python
    python=$(find_python)
    echo "netops: creating .venv with $("$python" --version)"
    "$python" -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
  fi
}

# Install exactly the pinned set of a lock file (hashes checked), then netops itself without
# dependencies. Re-run when the lock file changes (its marker file is older than the lock).
install_locked() {
  local lock=$1 marker=$2
  if [ ! -f "$marker" ] || [ "$lock" -nt "$marker" ] || [ pyproject.toml -nt "$marker" ]; then
    echo "netops: installing $lock into .venv ..."
    .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
    touch "$marker"
  fi
}
