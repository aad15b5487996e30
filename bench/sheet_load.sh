#!/usr/bin/env bash
# Benchmark: one sheet → BigQuery load with the release `job`, against the local Sheets server
# and the BigQuery emulator, at 1M cells (50,000 rows × 20 mixed columns) and 5M cells
# (250,000 × 20). Prints wall time, the job's CPU time (user+sys) and peak RSS, and a plain HTTP
# client baseline measured in the same run: the same windows fetched by curl (one process per
# window) and NDJSON of the same rows uploaded by curl (with schema auto-detection).
#
#   bench/sheet_load.sh            # both sizes
#   SIZES="50000" bench/sheet_load.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO_ROOT"

SIZES="${SIZES:-50000 250000}"
COLS=20
WINDOW="${WINDOW:-10000}"
[[ -x /usr/bin/time ]] || { echo "GNU time is needed: apt-get install -y time" >&2; exit 1; }
ensure_emulator
log "building release binaries"
cargo build --release --quiet -p sheettobigquery-job -p sheettobigquery-tests --bin job --bin sheets-server
rel="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"
work="$(mktemp -d)"
bq_port="$(free_port)"; grpc="$(free_port)"
start_emulator "$bq_port" "$grpc"
gen_args=()
for rows in $SIZES; do gen_args+=(--generate "bench${rows}:${rows}x${COLS}"); done
"$rel/sheets-server" "${gen_args[@]}" --port-file "$work/port" >"$work/sheets.log" 2>&1 &
sheets_pid=$!
# shellcheck disable=SC2064 # expand now: the trap must stop these very processes
trap "kill $sheets_pid 2>/dev/null || true; '$REPO_ROOT/.ci/bqemulator.sh' stop '$bq_port' >/dev/null 2>&1 || true; rm -rf '$work'" EXIT
for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
sheets="http://127.0.0.1:$(cat "$work/port")"
bq="http://127.0.0.1:$bq_port"

printf '\n%-10s %-8s %10s %10s %10s %12s %12s %12s\n' cells rows "wall s" "cpu s" "cpu s/Mc" "peak RSS MiB" "curl s" "NDJSON MiB"
for rows in $SIZES; do
  id="bench${rows}"
  cfg="{\"name\":\"bench_${rows}\",\"google_sheet_url\":\"$id\",\"google_cloud_project_id\":\"test-proj\",\"bigquery_dataset_id\":\"bench\",\"bigquery_table_id\":\"t_${rows}\",\"schema_handling\":\"auto_detect\",\"window_rows\":$WINDOW}"
  # The job, measured by GNU time: wall, user+sys CPU, max RSS (KiB).
  SHEETS_EMULATOR_HOST="$sheets" BIGQUERY_EMULATOR_HOST="$bq" LOG_FORMAT=json \
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$rel/job" --config-json "$cfg" >"$work/job.log"
  read -r wall user sys rss_kib <"$work/time"
  grep -q '"Job completed successfully"' "$work/job.log" || { tail -5 "$work/job.log"; exit 1; }

  # The I/O floor: the same requests with curl, then the same bytes uploaded.
  start=$(date +%s.%N)
  curl -sf "$sheets/v4/spreadsheets/$id?fields=sheets.properties" -o /dev/null
  last=$((rows + 1))
  last_col=$(python3 -c "n=$COLS; s=''
while n: n, r = divmod(n - 1, 26); s = chr(65 + r) + s
print(s)")
  : >"$work/values.jsonl"
  for ((r = 2; r <= last; r += WINDOW)); do
    end=$((r + WINDOW - 1)); ((end > last)) && end=$last
    curl -sf "$sheets/v4/spreadsheets/$id/values/Sheet1!A$r:$last_col$end?valueRenderOption=UNFORMATTED_VALUE&dateTimeRenderOption=SERIAL_NUMBER" >>"$work/values.jsonl"
    echo >>"$work/values.jsonl"
  done
  fetched=$(date +%s.%N)
  # Convert outside the timed part, so the upload carries as many bytes as the job's did.
  python3 - "$work/values.jsonl" "$work/rows.ndjson" <<'PY'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        line = line.strip()
        if not line: continue
        for row in json.loads(line).get("values", []):
            out.write(json.dumps({f"c{i}": v for i, v in enumerate(row)}, separators=(",", ":")) + "\n")
PY
  {
    printf -- '--B\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n'
    printf '{"configuration":{"load":{"destinationTable":{"projectId":"test-proj","datasetId":"bench","tableId":"floor_%s"},"sourceFormat":"NEWLINE_DELIMITED_JSON","writeDisposition":"WRITE_TRUNCATE","autodetect":true}}}' "$rows"
    printf '\r\n--B\r\nContent-Type: application/octet-stream\r\n\r\n'
    cat "$work/rows.ndjson"
    printf '\r\n--B--\r\n'
  } >"$work/body"
  up_start=$(date +%s.%N)
  curl -sf -X POST "$bq/upload/bigquery/v2/projects/test-proj/jobs?uploadType=multipart" \
    -H 'Content-Type: multipart/related; boundary=B' --data-binary @"$work/body" -o /dev/null
  up_end=$(date +%s.%N)
  floor=$(python3 -c "print(f'{($fetched-$start)+($up_end-$up_start):.2f}')")
  mib=$(python3 -c "import os; print(f'{os.path.getsize(\"$work/rows.ndjson\")/1048576:.1f}')")
  cells=$((rows * COLS))
  python3 - "$cells" "$rows" "$wall" "$user" "$sys" "$rss_kib" "$floor" "$mib" <<'PY'
import sys
cells, rows, wall, user, sys_, rss, floor, mib = sys.argv[1:]
cpu = float(user) + float(sys_)
print(f"{int(cells):<10} {rows:<8} {float(wall):>10.2f} {cpu:>10.2f} {cpu / (int(cells) / 1e6):>10.2f} {int(rss) / 1024:>12.1f} {float(floor):>12} {mib:>12}")
PY
done
