#!/usr/bin/env bash
# Runs the whole test suite against real components: PostgreSQL (started if it is down), the
# BigQuery emulator (installed into a venv and started on free ports), the local Sheets API
# server and the workspace's binaries. Extra arguments go to `cargo nextest run`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

ensure_postgres
ensure_emulator
port="$(free_port)"; grpc="$(free_port)"
log "starting the BigQuery emulator on 127.0.0.1:$port"
start_emulator "$port" "$grpc"
export TEST_BIGQUERY_URL="http://127.0.0.1:$port"

log "building"
cargo build --workspace --bins --quiet
if cargo nextest --version >/dev/null 2>&1; then
  log "running the tests (cargo nextest)"
  cargo nextest run --workspace --no-fail-fast "$@"
else
  log "running the tests (cargo test)"
  cargo test --workspace --no-fail-fast "$@"
fi
