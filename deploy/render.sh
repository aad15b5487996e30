#!/usr/bin/env bash
# Fills in a deploy template: every ${NAME} in FILE is replaced by the value of the environment
# variable NAME, and the result goes to stdout. Refuses (exit 1, listing them) when any of the
# names is unset, so a half-rendered spec never reaches `gcloud`.
#
#   export PROJECT_ID=my-project REGION=europe-west1 REPOSITORY=sheettobigquery TAG=latest \
#          CLOUDSQL_INSTANCE=sheettobigquery DB_NAME=sheettobigquery DB_USER=sheettobigquery
#   deploy/render.sh deploy/job.yaml > /tmp/job.yaml && gcloud run jobs replace /tmp/job.yaml
#
# The placeholders of each template: grep -o '\${[A-Z_][A-Z0-9_]*}' FILE | sort -u
set -euo pipefail

if [[ $# -ne 1 || ! -f "$1" ]]; then
  echo "usage: $0 TEMPLATE > RENDERED" >&2
  exit 2
fi

text="$(cat "$1")"
# shellcheck disable=SC2016  # the pattern matches a literal ${NAME}
mapfile -t names < <(grep -o '\${[A-Z_][A-Z0-9_]*}' "$1" | sed 's/^\${//; s/}$//' | sort -u)
missing=()
for name in "${names[@]}"; do
  if [[ -z "${!name+set}" ]]; then
    missing+=("$name")
    continue
  fi
  value="${!name}"
  text="${text//"\${$name}"/"$value"}"
done

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "$0: $1 needs these environment variables: ${missing[*]}" >&2
  exit 1
fi
printf '%s\n' "$text"
