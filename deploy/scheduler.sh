#!/usr/bin/env bash
# Creates, or updates when it exists, the Cloud Scheduler job that triggers the orchestrator.
#
#   PROJECT_ID=my-project REGION=europe-west1 OIDC_AUDIENCE=sheettobigquery-orchestrator \
#     deploy/scheduler.sh                      # service mode: POST <service URL>/run with OIDC
#   ORCHESTRATOR_MODE=job PROJECT_ID=my-project REGION=europe-west1 \
#     deploy/scheduler.sh                      # cron variant: start the orchestrator Cloud Run Job
#
# Service mode: the scheduler signs an OIDC ID token as sheettobigquery-scheduler@ with
# audience OIDC_AUDIENCE. `orchestrator serve` accepts it only if the audience equals its
# ORCHESTRATOR_OIDC_AUDIENCE and the email is in ORCHESTRATOR_OIDC_ALLOWED_EMAILS — both set in
# deploy/orchestrator-service.yaml from the same values (tests/it/deploy.rs checks).
#
# Attempt deadline (ATTEMPT_DEADLINE, default 1800s, the most Cloud Scheduler allows for HTTP
# targets): how long the scheduler waits for the answer. `serve` answers within
# ORCHESTRATOR_RESPOND_WITHIN (1500s in the service spec) — 200 with the tick's result, or 202
# while a longer tick goes on — so it always answers before the deadline; the service's request
# timeout (timeoutSeconds: 1800) is at least the deadline. A retried attempt carries the same
# X-CloudScheduler-ScheduleTime and starts nothing new.
#
# Other settings: SCHEDULE (cron, default every 15 minutes), TIME_ZONE (default Etc/UTC),
# SCHEDULER_LOCATION (default REGION). The caller needs iam.serviceAccounts.actAs on
# sheettobigquery-scheduler@ (roles/iam.serviceAccountUser).
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID}"
: "${REGION:?set REGION}"
ORCHESTRATOR_MODE="${ORCHESTRATOR_MODE:-service}"
SCHEDULE="${SCHEDULE:-*/15 * * * *}"
TIME_ZONE="${TIME_ZONE:-Etc/UTC}"
ATTEMPT_DEADLINE="${ATTEMPT_DEADLINE:-1800s}"
SCHEDULER_LOCATION="${SCHEDULER_LOCATION:-$REGION}"

exists() {
  gcloud scheduler jobs describe "$1" --project="$PROJECT_ID" --location="$SCHEDULER_LOCATION" >/dev/null 2>&1
}

service_mode() {
  : "${OIDC_AUDIENCE:?set OIDC_AUDIENCE to the value of ORCHESTRATOR_OIDC_AUDIENCE}"
  local url
  url="$(gcloud run services describe sheettobigquery-orchestrator --project="$PROJECT_ID" --region="$REGION" --format='value(status.url)')"
  if [[ -z "$url" ]]; then
    echo "the service sheettobigquery-orchestrator is not deployed in $REGION yet" >&2
    exit 1
  fi
  if exists sheettobigquery-orchestrator; then
    gcloud scheduler jobs update http sheettobigquery-orchestrator \
      --project="$PROJECT_ID" --location="$SCHEDULER_LOCATION" \
      --schedule="$SCHEDULE" --time-zone="$TIME_ZONE" \
      --uri="${url}/run" --http-method=POST \
      --oidc-service-account-email="sheettobigquery-scheduler@${PROJECT_ID}.iam.gserviceaccount.com" \
      --oidc-token-audience="${OIDC_AUDIENCE}" \
      --attempt-deadline="$ATTEMPT_DEADLINE" \
      --max-retry-attempts=2 --min-backoff=60s
  else
    gcloud scheduler jobs create http sheettobigquery-orchestrator \
      --project="$PROJECT_ID" --location="$SCHEDULER_LOCATION" \
      --schedule="$SCHEDULE" --time-zone="$TIME_ZONE" \
      --uri="${url}/run" --http-method=POST \
      --oidc-service-account-email="sheettobigquery-scheduler@${PROJECT_ID}.iam.gserviceaccount.com" \
      --oidc-token-audience="${OIDC_AUDIENCE}" \
      --attempt-deadline="$ATTEMPT_DEADLINE" \
      --max-retry-attempts=2 --min-backoff=60s \
      --description="sheettobigquery: one orchestrator tick"
  fi
}

# Cron variant: an OAuth access token (not OIDC) for the Cloud Run Admin API, which starts an
# execution of the orchestrator job and answers at once.
job_mode() {
  local uri="https://${REGION}-run.googleapis.com/apis/run.googleapis.com/v1/namespaces/${PROJECT_ID}/jobs/sheettobigquery-orchestrator:run"
  if exists sheettobigquery-orchestrator-cron; then
    gcloud scheduler jobs update http sheettobigquery-orchestrator-cron \
      --project="$PROJECT_ID" --location="$SCHEDULER_LOCATION" \
      --schedule="$SCHEDULE" --time-zone="$TIME_ZONE" \
      --uri="$uri" --http-method=POST \
      --oauth-service-account-email="sheettobigquery-scheduler@${PROJECT_ID}.iam.gserviceaccount.com" \
      --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform \
      --attempt-deadline=60s
  else
    gcloud scheduler jobs create http sheettobigquery-orchestrator-cron \
      --project="$PROJECT_ID" --location="$SCHEDULER_LOCATION" \
      --schedule="$SCHEDULE" --time-zone="$TIME_ZONE" \
      --uri="$uri" --http-method=POST \
      --oauth-service-account-email="sheettobigquery-scheduler@${PROJECT_ID}.iam.gserviceaccount.com" \
      --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform \
      --attempt-deadline=60s \
      --description="sheettobigquery: start one orchestrator run"
  fi
}

case "$ORCHESTRATOR_MODE" in
  service) service_mode ;;
  job) job_mode ;;
  *)
    echo "ORCHESTRATOR_MODE must be service or job, not $ORCHESTRATOR_MODE" >&2
    exit 2
    ;;
esac
