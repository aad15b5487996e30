#!/usr/bin/env bash
# Benchmark of the postgres_upsert kind, all methods in one run on the same data:
#   1. plain `\copy` of import.csv into an empty table with a primary key (the floor)
#   2. the job: atomic upsert of import.csv (500k updates + 500k new keys) into a table already
#      holding 1,000,000 rows — wall time and peak RSS measured by GNU time
#   3. pgloader loading import.csv into an empty table (Debian package `pgloader`)
#   4. naive 1,000-row multi-VALUES INSERT … ON CONFLICT through psql into the 1,000,000-row table
# Prints rows/s for each and the job's peak RSS; targets: job ≥ 60k rows/s, ≥ 3× pgloader,
# peak RSS ≤ 100 MiB.
#
#   bench/upsert/run.sh                 # 1,000,000 rows (data generated once under bench/upsert/data/)
#   ROWS=200000 bench/upsert/run.sh     # smaller
#   BENCH_DATABASE_URL=postgres://user@host:5432/postgres bench/upsert/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS="${ROWS:-1000000}"
ADMIN_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="stb_bench_upsert"
URL="${ADMIN_URL%/*}/$DB"
DATA="bench/upsert/data/$ROWS"
JOB="${JOB_BIN:-target/release/job}"

log() { printf '[bench] %s\n' "$*" >&2; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

command -v pgloader >/dev/null || { log "pgloader missing: apt-get update && apt-get install -y pgloader"; exit 1; }
[[ -x /usr/bin/time ]] || { log "GNU time missing: apt-get install -y time"; exit 1; }
if [[ -z "${JOB_BIN:-}" ]]; then
  log "building the release job"
  cargo build --release --quiet -p sheettobigquery-job
fi
if [[ ! -s "$DATA/naive.sql" ]]; then
  log "generating $ROWS-row CSVs in $DATA"
  python3 bench/upsert/gen_data.py "$DATA" "$ROWS"
fi
DATA_ABS="$(cd "$DATA" && pwd)"

psql -q -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
trap 'psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
P() { psql -q -X -v ON_ERROR_STOP=1 "$URL" "$@"; }
DDL="CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, email text, age integer, score numeric(12,2),
  active boolean, city text, signup date, last_seen timestamptz, note text)"
empty_table() { P -c "DROP TABLE IF EXISTS bench" -c "$DDL"; }
full_table() {
  empty_table
  P -c "\\copy bench FROM '$DATA_ABS/base.csv' WITH (FORMAT csv, HEADER true)" -c "VACUUM ANALYZE bench"
}

# 1. \copy into the empty table.
empty_table
t0=$(now); P -c "\\copy bench FROM '$DATA_ABS/import.csv' WITH (FORMAT csv, HEADER true)"; t1=$(now)
copy_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

# 2. The job: atomic upsert into the full table.
full_table
cfg=$(cat <<JSON
{"name": "bench_upsert", "kind": "postgres_upsert", "spec": {
  "source": {"csv": {"path": "$DATA_ABS/import.csv"}},
  "target": {"connection_env": "BENCH_TARGET_URL", "table": "bench", "key_columns": ["id"]},
  "mode": "atomic", "max_rows": $ROWS, "statement_timeout_seconds": 1200}}
JSON
)
t0=$(now)
env -u DATABASE_URL -u ENVIRONMENT BENCH_TARGET_URL="$URL" LOG_FORMAT=json SHEETS_EMULATOR_HOST=127.0.0.1:9 BIGQUERY_EMULATOR_HOST=127.0.0.1:9 \
  /usr/bin/time -f '%e %M' -o "$DATA/time.txt" "$JOB" --config-json "$cfg" >"$DATA/job.log"
t1=$(now)
grep -q '"Job completed successfully"' "$DATA/job.log" || { tail -5 "$DATA/job.log"; exit 1; }
read -r job_s rss_kib <"$DATA/time.txt"
job_summary=$(grep '"Job completed successfully"' "$DATA/job.log" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["summary"])')
count=$(P -At -c "SELECT count(*) FROM bench")
[[ "$count" == "$((ROWS + ROWS / 2))" ]] || { log "unexpected row count $count after the upsert"; exit 1; }

# 3. pgloader into the empty table.
empty_table
cat >"$DATA/load.pgl" <<PGL
LOAD CSV
  FROM '$DATA_ABS/import.csv' (id, name, email, age, score, active, city, signup, last_seen, note)
  INTO $URL?tablename=bench (id, name, email, age, score, active, city, signup, last_seen, note)
  WITH skip header = 1, fields optionally enclosed by '"', fields escaped by double-quote, fields terminated by ','
  SET work_mem to '64MB';
PGL
t0=$(now); pgloader --quiet "$DATA/load.pgl" >"$DATA/pgloader.log" 2>&1 || { tail -20 "$DATA/pgloader.log"; exit 1; }; t1=$(now)
pgl_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
count=$(P -At -c "SELECT count(*) FROM bench")
[[ "$count" == "$ROWS" ]] || { log "pgloader loaded $count rows, expected $ROWS"; tail -20 "$DATA/pgloader.log"; exit 1; }

# 4. Naive 1,000-row multi-VALUES INSERT … ON CONFLICT into the full table.
full_table
t0=$(now); P -f "$DATA/naive.sql" >/dev/null; t1=$(now)
naive_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

job_rate=$(rate "$ROWS" "$job_s"); pgl_rate=$(rate "$ROWS" "$pgl_s")
printf '\npostgres_upsert benchmark: %s-row, 10-column CSV (%s updates + %s new keys; upserts into a %s-row table)\n' "$ROWS" "$((ROWS / 2))" "$((ROWS / 2))" "$ROWS"
printf '%-58s %9s %12s\n' method seconds "rows/s"
printf '%-58s %9.2f %12s\n' "\\copy into the empty table (floor)" "$copy_s" "$(rate "$ROWS" "$copy_s")"
printf '%-58s %9.2f %12s\n' "job postgres_upsert, atomic (staging COPY + ON CONFLICT)" "$job_s" "$job_rate"
printf '%-58s %9.2f %12s\n' "pgloader into the empty table" "$pgl_s" "$pgl_rate"
printf '%-58s %9.2f %12s\n' "naive 1,000-row INSERT … ON CONFLICT (psql)" "$naive_s" "$(rate "$ROWS" "$naive_s")"
printf 'job peak RSS: %.1f MiB; job vs pgloader: %.2fx; job summary: %s\n' "$(awk -v k="$rss_kib" 'BEGIN { print k / 1024 }')" \
  "$(awk -v a="$job_rate" -v b="$pgl_rate" 'BEGIN { print a / b }')" "$job_summary"
printf 'targets: >= 60000 rows/s, >= 3x pgloader, peak RSS <= 100 MiB\n'
