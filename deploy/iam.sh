#!/usr/bin/env bash
# Service accounts and least-privilege IAM for sheettobigquery. Idempotent; two phases:
#
#   deploy/iam.sh accounts    # before the first deploy: service accounts, custom roles,
#                             # project-, secret- and dataset-level grants
#   deploy/iam.sh resources   # after deploying the job and the orchestrator: grants on them
#
# Settings (environment):
#   PROJECT_ID          the project that runs everything (required)
#   REGION              the Cloud Run region (required; `accounts` grants the Artifact Registry repo in it)
#   BIGQUERY_PROJECTS   comma-separated projects the configs load into
#                       (google_cloud_project_id); default PROJECT_ID
#   DATASETS            comma-separated destination datasets, `dataset` or `project:dataset`
#                       (create them first: `bq mk --dataset PROJECT:DATASET`); may be empty
#   BQ_LOCATION         location of those datasets for the GRANT statements (e.g. EU); optional
#   BUILD_SA            the account Cloud Build deploys with; default the legacy Cloud Build
#                       account PROJECT_NUMBER@cloudbuild.gserviceaccount.com
#   ORCHESTRATOR_MODE   service (Cloud Scheduler → `orchestrator serve`, the default) or job
#                       (Cloud Scheduler → the Cloud Run Job running `orchestrator run`)
#
# Who gets what, and why:
#
#   sheettobigquery-job@ (runs `job`)
#     - Google Sheets: no IAM role. Share each spreadsheet with this account's email as Viewer;
#       the job asks only for https://www.googleapis.com/auth/spreadsheets.readonly.
#     - roles/bigquery.jobUser on each BigQuery project: runs the load jobs.
#     - roles/bigquery.dataEditor on each destination dataset: creates/replaces its tables.
#       (A job that must create missing datasets itself needs roles/bigquery.user on the
#       project instead; we recommend creating the datasets up front.)
#     - roles/cloudsql.client on the project: the /cloudsql connector.
#     - roles/secretmanager.secretAccessor on the secret sheettobigquery-postgres-password.
#   sheettobigquery-orchestrator@ (runs `orchestrator serve` or `orchestrator run`)
#     - custom role sheettobigqueryJobRunner (deploy/orchestrator-role.yaml) on the job
#       sheettobigquery-job only: run.jobs.runWithOverrides, run.executions.get/list/cancel …
#     - roles/iam.serviceAccountUser on sheettobigquery-job@ only (iam.serviceAccounts.actAs):
#       the executions it starts run as that account.
#     - roles/cloudsql.client on the project; roles/secretmanager.secretAccessor on the
#       password secret (and on sheettobigquery-bearer-token if you use the static token).
#   sheettobigquery-scheduler@ (the identity of the Cloud Scheduler job)
#     - roles/run.invoker on the service sheettobigquery-orchestrator only (service mode), or
#       on the job sheettobigquery-orchestrator only (job mode).
#   BUILD_SA (Cloud Build, cloudbuild-job.yaml)
#     - roles/artifactregistry.writer on the repository, roles/run.developer on the project
#       (it creates the job on the first deploy), roles/iam.serviceAccountUser on
#       sheettobigquery-job@ only.
set -euo pipefail

phase="${1:-}"
: "${PROJECT_ID:?set PROJECT_ID}"
BIGQUERY_PROJECTS="${BIGQUERY_PROJECTS:-$PROJECT_ID}"
DATASETS="${DATASETS:-}"
ORCHESTRATOR_MODE="${ORCHESTRATOR_MODE:-service}"
REPOSITORY="${REPOSITORY:-sheettobigquery}"

JOB_SA="sheettobigquery-job@${PROJECT_ID}.iam.gserviceaccount.com"
ORCH_SA="sheettobigquery-orchestrator@${PROJECT_ID}.iam.gserviceaccount.com"
SCHED_SA="sheettobigquery-scheduler@${PROJECT_ID}.iam.gserviceaccount.com"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ensure_sa NAME DISPLAY_NAME
ensure_sa() {
  if ! gcloud iam service-accounts describe "$1@${PROJECT_ID}.iam.gserviceaccount.com" --project="$PROJECT_ID" >/dev/null 2>&1; then
    gcloud iam service-accounts create "$1" --project="$PROJECT_ID" --display-name="$2"
  fi
}

# ensure_role ROLE_ID FILE
ensure_role() {
  if gcloud iam roles describe "$1" --project="$PROJECT_ID" >/dev/null 2>&1; then
    gcloud iam roles update "$1" --project="$PROJECT_ID" --file="$2" --quiet >/dev/null
  else
    gcloud iam roles create "$1" --project="$PROJECT_ID" --file="$2"
  fi
}

# project_role PROJECT MEMBER ROLE
project_role() {
  gcloud projects add-iam-policy-binding "$1" --member="$2" --role="$3" --condition=None >/dev/null
}

# secret_access SECRET MEMBER: skipped (with a note) while the secret does not exist yet.
secret_access() {
  if gcloud secrets describe "$1" --project="$PROJECT_ID" >/dev/null 2>&1; then
    gcloud secrets add-iam-policy-binding "$1" --project="$PROJECT_ID" \
      --member="$2" --role=roles/secretmanager.secretAccessor --condition=None >/dev/null
  else
    echo "note: secret $1 does not exist yet; rerun after creating it" >&2
  fi
}

accounts() {
  local project_number build_sa bq_project dataset dataset_project location_flag
  : "${REGION:?set REGION}" # checked before any grant, not half-way through
  project_number="$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')"
  build_sa="${BUILD_SA:-${project_number}@cloudbuild.gserviceaccount.com}"

  ensure_sa sheettobigquery-job "sheettobigquery job (loads one config)"
  ensure_sa sheettobigquery-orchestrator "sheettobigquery orchestrator (starts job executions)"
  ensure_sa sheettobigquery-scheduler "sheettobigquery Cloud Scheduler caller"
  ensure_role sheettobigqueryJobRunner "$here/orchestrator-role.yaml"

  # The job.
  for bq_project in ${BIGQUERY_PROJECTS//,/ }; do
    project_role "$bq_project" "serviceAccount:${JOB_SA}" roles/bigquery.jobUser
  done
  location_flag=()
  if [[ -n "${BQ_LOCATION:-}" ]]; then location_flag=(--location="$BQ_LOCATION"); fi
  for dataset in ${DATASETS//,/ }; do
    dataset_project="$PROJECT_ID"
    if [[ "$dataset" == *:* ]]; then dataset_project="${dataset%%:*}"; dataset="${dataset#*:}"; fi
    bq query --project_id="$PROJECT_ID" "${location_flag[@]}" --nouse_legacy_sql \
      "GRANT \`roles/bigquery.dataEditor\` ON SCHEMA \`${dataset_project}.${dataset}\` TO \"serviceAccount:${JOB_SA}\"" >/dev/null
  done
  project_role "$PROJECT_ID" "serviceAccount:${JOB_SA}" roles/cloudsql.client
  secret_access sheettobigquery-postgres-password "serviceAccount:${JOB_SA}"

  # The orchestrator.
  project_role "$PROJECT_ID" "serviceAccount:${ORCH_SA}" roles/cloudsql.client
  gcloud iam service-accounts add-iam-policy-binding "$JOB_SA" --project="$PROJECT_ID" \
    --member="serviceAccount:${ORCH_SA}" --role=roles/iam.serviceAccountUser >/dev/null
  secret_access sheettobigquery-postgres-password "serviceAccount:${ORCH_SA}"
  if gcloud secrets describe sheettobigquery-bearer-token --project="$PROJECT_ID" >/dev/null 2>&1; then
    secret_access sheettobigquery-bearer-token "serviceAccount:${ORCH_SA}"
  fi

  # Cloud Build (cloudbuild-job.yaml).
  gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY" --project="$PROJECT_ID" \
    --location="${REGION:?set REGION}" --member="serviceAccount:${build_sa}" --role=roles/artifactregistry.writer >/dev/null
  project_role "$PROJECT_ID" "serviceAccount:${build_sa}" roles/run.developer
  gcloud iam service-accounts add-iam-policy-binding "$JOB_SA" --project="$PROJECT_ID" \
    --member="serviceAccount:${build_sa}" --role=roles/iam.serviceAccountUser >/dev/null
}

resources() {
  : "${REGION:?set REGION}"
  gcloud run jobs add-iam-policy-binding sheettobigquery-job --project="$PROJECT_ID" --region="$REGION" \
    --member="serviceAccount:${ORCH_SA}" --role="projects/${PROJECT_ID}/roles/sheettobigqueryJobRunner" >/dev/null
  case "$ORCHESTRATOR_MODE" in
    service)
      gcloud run services add-iam-policy-binding sheettobigquery-orchestrator --project="$PROJECT_ID" --region="$REGION" \
        --member="serviceAccount:${SCHED_SA}" --role=roles/run.invoker >/dev/null
      ;;
    job)
      gcloud run jobs add-iam-policy-binding sheettobigquery-orchestrator --project="$PROJECT_ID" --region="$REGION" \
        --member="serviceAccount:${SCHED_SA}" --role=roles/run.invoker >/dev/null
      ;;
    *)
      echo "ORCHESTRATOR_MODE must be service or job, not $ORCHESTRATOR_MODE" >&2
      exit 2
      ;;
  esac
}

case "$phase" in
  accounts) accounts ;;
  resources) resources ;;
  *)
    echo "usage: $0 accounts|resources   (see the comments at the top of this file)" >&2
    exit 2
    ;;
esac
echo "iam: $phase done" >&2
