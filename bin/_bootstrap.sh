# Sourced by bin/run and bin/test: make .venv (Python 3.11+) and install the pinned
# requirements into it, skipping pip when the requirements have not changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

find_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "Botfleet needs Python 3.11 or newer (python3.11 not found)." >&2
  return 1
}

bootstrap_venv() {
  local requirements_file="$1"
  if [ ! -x .venv/bin/python ]; then
    echo "[botfleet] creating .venv"
    "$(find_python)" -m venv .venv
  fi
  local stamp=".venv/.installed-$(basename "$requirements_file")"
  local digest
  digest="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
  # The development set includes the runtime one: installed and current, it will do.
  local dev_stamp=".venv/.installed-requirements-dev.txt"
  if [ -f "$dev_stamp" ] && [ "$(cat "$dev_stamp")" = "$digest" ]; then
    stamp="$dev_stamp"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "[botfleet] installing $requirements_file into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements_file"
    echo "$digest" > "$stamp"
  fi
  export PATH="$ROOT/.venv/bin:$PATH"
  export DJANGO_SETTINGS_MODULE=config.settings
}
