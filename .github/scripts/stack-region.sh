#!/usr/bin/env bash
# Print the AWS region of a stack from its stack file (`airflow-k8s:aws:` -> `region:`), so the
# workflows use the region the stack deploys to rather than one written into them.
# Review stacks (review-pr-<n>) use aws-dev's file (review-stack.sh copies it).
set -euo pipefail
stack=${1:?usage: stack-region.sh STACK}
dir=${STACKS_DIR:-"$(dirname "$0")/../../stacks"}
file="$dir/Pulumi.$stack.yaml"
[[ "$stack" =~ ^review-pr-[0-9]+$ && ! -f "$file" ]] && file="$dir/Pulumi.aws-dev.yaml"
region=$(awk '
  /^  airflow-k8s:aws:/ { inside = 1; next }
  inside && /^  [^ ]/ { inside = 0 }
  inside && /^    region:/ { sub(/^    region:[ ]*/, ""); sub(/[ ]*#.*$/, ""); gsub(/"/, ""); print; exit }
' "$file")
if [[ ! "$region" =~ ^[a-z]{2}(-gov)?-[a-z]+-[0-9]$ ]]; then
  echo "no aws region in $file (got '$region')" >&2
  exit 1
fi
echo "$region"
