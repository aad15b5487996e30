#!/usr/bin/env bash
# Quick start: everything on local defaults, end to end. Starts PostgreSQL if needed, installs and
# starts the BigQuery emulator, serves the example spreadsheets in tests/fixtures/sheets from the
# local Sheets API server, creates a demo database with the configs in examples/demo-configs.json,
# runs one orchestrator tick (which starts one `job` per due config), and shows what landed.
#
#   scripts/demo.sh           # run the demo, then stop the local servers
#   KEEP=1 scripts/demo.sh    # leave them running and print how to reach them
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

ensure_postgres
ensure_emulator
log "building the binaries"
cargo build --workspace --bins --quiet
bin="$REPO_ROOT/target/debug"

bq_port="${BQ_PORT:-$(free_port)}"; grpc="$(free_port)"
log "starting the BigQuery emulator on 127.0.0.1:$bq_port"
"$REPO_ROOT/.ci/bqemulator.sh" start "$bq_port" "$grpc" test-proj >/dev/null
portfile="$(mktemp)"
"$bin/sheets-server" --dir tests/fixtures/sheets --port-file "$portfile" >/dev/null 2>&1 &
sheets_pid=$!
cleanup() {
  if [[ -z "${KEEP:-}" ]]; then
    kill "$sheets_pid" 2>/dev/null || true
    "$REPO_ROOT/.ci/bqemulator.sh" stop "$bq_port" >/dev/null 2>&1 || true
  fi
  rm -f "$portfile"
}
trap cleanup EXIT
for _ in $(seq 1 100); do [[ -s "$portfile" ]] && break; sleep 0.1; done
sheets_port="$(cat "$portfile")"
log "serving example spreadsheets on 127.0.0.1:$sheets_port"

export SHEETS_EMULATOR_HOST="http://127.0.0.1:$sheets_port"
export BIGQUERY_EMULATOR_HOST="http://127.0.0.1:$bq_port"
export DATABASE_URL="${DEMO_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sheettobigquery_demo}"
export LOG_FORMAT="${LOG_FORMAT:-text}"
admin_url="${DATABASE_URL%/*}/postgres"
psql "$admin_url" -qc "DROP DATABASE IF EXISTS sheettobigquery_demo WITH (FORCE)" -c "CREATE DATABASE sheettobigquery_demo" >/dev/null

log "jobctl migrate"
"$bin/jobctl" migrate
log "jobctl configs import examples/demo-configs.json"
"$bin/jobctl" configs import examples/demo-configs.json
log "orchestrator run --dry-run (what is due and why)"
"$bin/orchestrator" run --dry-run
log "orchestrator run (one tick: claim, fan out local jobs, wait, record)"
"$bin/orchestrator" run --executor local --max-parallel-jobs 2
log "jobctl status"
"$bin/jobctl" status

log "what landed in BigQuery (the emulator)"
for table in sales orders monthly_totals; do
  curl -sf "$BIGQUERY_EMULATOR_HOST/bigquery/v2/projects/test-proj/queries" \
    -d "{\"query\":\"SELECT * FROM \`test-proj.demo.$table\` LIMIT 5\",\"useLegacySql\":false}" |
    python3 -c '
import json, sys
r = json.load(sys.stdin)
print()
print("test-proj.demo.'"$table"'")
print("  " + " | ".join("%s:%s" % (f["name"], f["type"]) for f in r["schema"]["fields"]))
for row in r.get("rows", []):
    print("  " + " | ".join("NULL" if c["v"] is None else str(c["v"]) for c in row["f"]))
'
done
if [[ -n "${KEEP:-}" ]]; then
  echo
  echo "Left running: SHEETS_EMULATOR_HOST=$SHEETS_EMULATOR_HOST BIGQUERY_EMULATOR_HOST=$BIGQUERY_EMULATOR_HOST DATABASE_URL=$DATABASE_URL"
fi
