#!/usr/bin/env bash
# Only test stacks may be torn down by automation: aws-dev, azure-dev, review-pr-<n>.
set -euo pipefail
stack=${1:?usage: check-test-stack.sh STACK}
if [[ ! "$stack" =~ ^((aws|azure)-dev|review-pr-[0-9]+)$ ]]; then
  echo "refusing '$stack': only aws-dev, azure-dev and review-pr-<n> are test stacks" >&2
  exit 1
fi
