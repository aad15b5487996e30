#!/usr/bin/env bash
# Local BigQuery emulator (bqemulator, DuckDB-backed) for tests and the demo.
#
#   .ci/bqemulator.sh install [VENV_DIR]            # idempotent; prints the bqemulator path
#   .ci/bqemulator.sh start PORT GRPC_PORT [PROJECT] # background start; prints the PID
#   .ci/bqemulator.sh stop PORT                     # stops the emulator started on PORT
#
# VENV_DIR defaults to $BQEMU_VENV or <repo root>/.bqemu. The emulator runs with HOME=VENV/home
# (holds the offline DuckDB spatial extension) and BQEMU_ENABLE_FORMAT_EXTENSIONS=false.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

BQEMU_VERSION=1.4.0
DUCKDB_VERSION=1.5.5
PY="${PYTHON:-python3}"

die() { echo "bqemulator.sh: $*" >&2; exit 1; }

venv_dir() { echo "${1:-${BQEMU_VENV:-$REPO_ROOT/.bqemu}}"; }

installed_ok() {
  # true when the venv has all pinned packages at the pinned versions
  local venv="$1"
  [[ -x "$venv/bin/python" && -x "$venv/bin/bqemulator" ]] || return 1
  "$venv/bin/python" - "$BQEMU_VERSION" "$DUCKDB_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
want = {"bqemulator": sys.argv[1], "duckdb": sys.argv[2],
        "duckdb-extension-spatial": sys.argv[2], "numpy": None}
for name, v in want.items():
    have = version(name)
    if v is not None and have != v:
        sys.exit(1)
EOF
}

cmd_install() {
  local venv; venv="$(venv_dir "${1:-}")"
  mkdir -p "$(dirname "$venv")"
  venv="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"
  if [[ ! -x "$venv/bin/python" ]]; then
    # Debian's python3 ships venv support separately.
    if ! "$PY" -c 'import ensurepip' 2>/dev/null && command -v apt-get >/dev/null; then
      echo "installing python3-venv" >&2
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
    fi
    echo "creating venv $venv" >&2
    "$PY" -m venv "$venv" >&2
  fi
  if ! installed_ok "$venv"; then
    echo "installing bqemulator==$BQEMU_VERSION into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "bqemulator==$BQEMU_VERSION" "duckdb==$DUCKDB_VERSION" \
      "duckdb-extension-spatial==$DUCKDB_VERSION" numpy >&2
    installed_ok "$venv" || die "pinned packages not installed correctly in $venv"
  fi
  # Offline DuckDB spatial extension in a private HOME.
  local ext_src ext_dst
  ext_src="$("$venv/bin/python" - "$DUCKDB_VERSION" <<'EOF'
import os, sys, duckdb_extension_spatial as m
print(os.path.join(os.path.dirname(m.__file__), "extensions", "v" + sys.argv[1], "spatial.duckdb_extension"))
EOF
)"
  [[ -f "$ext_src" ]] || die "spatial extension not found at $ext_src"
  local platform
  platform="$("$venv/bin/python" -c 'import duckdb; print(duckdb.execute("PRAGMA platform").fetchone()[0])')"
  ext_dst="$venv/home/.duckdb/extensions/v$DUCKDB_VERSION/$platform"
  mkdir -p "$ext_dst"
  if ! cmp -s "$ext_src" "$ext_dst/spatial.duckdb_extension"; then
    cp "$ext_src" "$ext_dst/spatial.duckdb_extension"
  fi
  echo "$venv/bin/bqemulator"
}

pidfile() { echo "$1/bqemu-$2.pid"; }

cmd_start() {
  [[ $# -ge 2 ]] || die "usage: start PORT GRPC_PORT [PROJECT]"
  local port="$1" grpc="$2" project="${3:-test-proj}"
  local venv; venv="$(venv_dir "")"
  [[ -x "$venv/bin/bqemulator" ]] || die "not installed in $venv: run '$0 install' first"
  local pf log url
  pf="$(pidfile "$venv" "$port")"
  log="$venv/bqemu-$port.log"
  url="http://127.0.0.1:$port/bigquery/v2/projects/$project/datasets"
  if [[ -f "$pf" ]] && kill -0 "$(cat "$pf")" 2>/dev/null; then
    if curl -fsS -o /dev/null --max-time 2 "$url"; then
      cat "$pf"; return 0
    fi
    die "pid $(cat "$pf") from $pf alive but REST on port $port not answering"
  fi
  if curl -sS -o /dev/null --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null; then
    die "port $port already in use by another process"
  fi
  mkdir -p "$venv/home" "$venv/uploads"
  rm -f "$pf"
  # setsid: own session and process group, so 'stop' can end the emulator and anything it
  # forks. The inner shell writes its own PID (kept by exec) whether or not setsid forked.
  # shellcheck disable=SC2016  # $$ and $@ belong to the inner shell
  local inner='echo $$ >"$1"; shift; exec "$@"'
  HOME="$venv/home" BQEMU_ENABLE_FORMAT_EXTENSIONS=false \
  BQEMU_UPLOAD_STAGING_DIR="$venv/uploads" \
    setsid bash -c "$inner" _ "$pf" \
      "$venv/bin/bqemulator" start \
      --rest-host 127.0.0.1 --rest-port "$port" \
      --grpc-host 127.0.0.1 --grpc-port "$grpc" \
      --project "$project" >"$log" 2>&1 </dev/null &
  local pid=""
  for _ in $(seq 50); do [[ -s "$pf" ]] && { pid="$(cat "$pf")"; break; }; sleep 0.1; done
  [[ -n "$pid" ]] || die "emulator did not start (no pid written to $pf)"
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pf"
      echo "--- $log ---" >&2; tail -n 40 "$log" >&2 || true
      die "emulator exited during startup"
    fi
    if (( SECONDS >= deadline )); then
      echo "--- $log ---" >&2; tail -n 40 "$log" >&2 || true
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
      rm -f "$pf"
      die "REST did not answer on port $port within 60 s"
    fi
    sleep 0.2
  done
  echo "$pid"
}

cmd_stop() {
  [[ $# -ge 1 ]] || die "usage: stop PORT"
  local venv pf pid
  venv="$(venv_dir "")"
  pf="$(pidfile "$venv" "$1")"
  [[ -f "$pf" ]] || { echo "no emulator recorded for port $1" >&2; return 0; }
  pid="$(cat "$pf")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pf"
}

sub="${1:-}"; shift || true
case "$sub" in
  install) cmd_install "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  *) die "usage: $0 install [VENV_DIR] | start PORT GRPC_PORT [PROJECT] | stop PORT" ;;
esac
