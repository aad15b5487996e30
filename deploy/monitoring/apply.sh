#!/usr/bin/env bash
# Creates or updates the log-based metrics and the alert policies in deploy/monitoring/.
# Idempotent: run it again after editing a file.
#
#   PROJECT_ID=my-project \
#   NOTIFICATION_CHANNELS=projects/my-project/notificationChannels/1234567890 \
#     deploy/monitoring/apply.sh
#
# NOTIFICATION_CHANNELS: comma-separated channel names (`gcloud beta monitoring channels list`);
# without it the policies are created with no channel (incidents show in the console only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${PROJECT_ID:?set PROJECT_ID}"
channels="${NOTIFICATION_CHANNELS:-}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# upsert_metric NAME FILE
upsert_metric() {
  if gcloud logging metrics describe "$1" --project="$PROJECT_ID" >/dev/null 2>&1; then
    gcloud logging metrics update "$1" --project="$PROJECT_ID" --config-from-file="$2"
  else
    gcloud logging metrics create "$1" --project="$PROJECT_ID" --config-from-file="$2"
  fi
}

# upsert_policy FILE: matched to an existing policy by its displayName.
upsert_policy() {
  local display policy existing
  display="$(sed -n 's/^displayName: *"\(.*\)"$/\1/p' "$1")"
  policy="$tmp/$(basename "$1")"
  cp "$1" "$policy"
  if [[ -n "$channels" ]]; then
    echo "notificationChannels:" >>"$policy"
    tr ',' '\n' <<<"$channels" | sed 's/^/  - /' >>"$policy"
  fi
  existing="$(gcloud alpha monitoring policies list --project="$PROJECT_ID" \
    --filter="displayName=\"$display\"" --format='value(name)' | head -n 1)"
  if [[ -n "$existing" ]]; then
    gcloud alpha monitoring policies update "$existing" --project="$PROJECT_ID" --policy-from-file="$policy"
  else
    gcloud alpha monitoring policies create --project="$PROJECT_ID" --policy-from-file="$policy"
  fi
}

upsert_metric sheettobigquery_job_succeeded "$here/metric-job-succeeded.yaml"
upsert_metric sheettobigquery_job_failed "$here/metric-job-failed.yaml"
# A new log-based metric takes a minute or two before policies can refer to it.
upsert_policy "$here/alert-job-failed.yaml"
upsert_policy "$here/alert-no-success.yaml"
