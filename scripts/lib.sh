# shellcheck shell=bash
# Shared setup for scripts/test.sh, scripts/demo.sh and the benchmarks: make sure Postgres runs,
# the BigQuery emulator is installed, and the Rust tools are there. Sourced, not run.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BQEMU_VENV="${BQEMU_VENV:-$REPO_ROOT/.bqemu}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

ensure_postgres() {
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
      log "installing PostgreSQL"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    fi
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
    pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
  fi
  # Tests connect as postgres over TCP without a password (TEST_DATABASE_URL overrides this):
  # trust local TCP connections when that does not work yet, whether we started the server or not.
  if [[ -z "${TEST_DATABASE_URL:-}" ]] && ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    local ver hba
    ver="$(pg_version)"
    hba="/etc/postgresql/$ver/main/pg_hba.conf"
    [[ -f "$hba" ]] || { echo "cannot connect as postgres@127.0.0.1 and no $hba to fix; set TEST_DATABASE_URL" >&2; exit 1; }
    log "trusting local TCP connections in $hba"
    sed -i 's/^\(host\s\+all\s\+all\s\+127.0.0.1\/32\s\+\).*/\1trust/' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  fi
}

# shellcheck disable=SC2012 # cluster directories are version numbers
pg_version() { ls /etc/postgresql | sort -V | tail -1; }

ensure_emulator() {
  log "installing the BigQuery emulator (bqemulator) into $BQEMU_VENV"
  "$REPO_ROOT/.ci/bqemulator.sh" install "$BQEMU_VENV" >/dev/null
}

# start_emulator PORT GRPC_PORT: starts it and stops it when the calling script exits.
start_emulator() {
  "$REPO_ROOT/.ci/bqemulator.sh" start "$1" "$2" test-proj >/dev/null
  # shellcheck disable=SC2064 # expand the port now, not when the trap fires
  trap "'$REPO_ROOT/.ci/bqemulator.sh' stop '$1' >/dev/null 2>&1 || true" EXIT
}
