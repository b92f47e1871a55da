#!/usr/bin/env bash
# Set up (once) and run: `bash scripts/dev.sh main` trains fashion_mlp on both
# backends; `bash scripts/dev.sh test` runs the test suite.  Any further
# arguments go to the command.
#
# Installs the pinned stack into ./.venv unless a virtual environment is
# already active, and only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
  PYTHON=.venv/bin/python
else
  PYTHON="$VIRTUAL_ENV/bin/python"
fi

stamp="$("$PYTHON" -c 'import sys; print(sys.prefix)')/.dual-backend-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing dual-backend and its pinned stack (a few minutes the first time)..."
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[all]" 2>&1 | grep -v "^WARNING: Location" || true
  # One framework per check: loading torch's Triton after TensorFlow crashes a process
  # (see torch_impl/process.py).
  for module in "dual_backend, torch, torchvision, lightning" "tensorflow"; do
    "$PYTHON" -c "import $module" 2>/dev/null || { echo "install failed: cannot import $module" >&2; exit 1; }
  done
  touch "$stamp"
fi

# The course's data: a folder given by DUAL_BACKEND_DATA_DIR, else ../shared/datasets
# when it is there (this repository's CI), else the cache / Debian / a download.
if [ -z "${DUAL_BACKEND_DATA_DIR:-}" ] && [ -d ../shared/datasets ]; then
  export DUAL_BACKEND_DATA_DIR="$(cd ../shared/datasets && pwd)"
fi

job="${1:-main}"
shift || true
case "$job" in
  main) exec "$PYTHON" -m dual_backend.cli run fashion_mlp --backend both "$@" ;;
  test) exec "$PYTHON" -m pytest "$@" ;;
  *) echo "usage: bash scripts/dev.sh main|test [arguments]" >&2; exit 2 ;;
esac
