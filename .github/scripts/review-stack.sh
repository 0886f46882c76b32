#!/usr/bin/env bash
# Make the stack file of a review environment: aws-dev's settings under the review stack's name.
set -euo pipefail
stack=${1:?usage: review-stack.sh review-pr-<n>}
bash "$(dirname "$0")/check-test-stack.sh" "$stack"
cd "$(dirname "$0")/../.."
cp stacks/Pulumi.aws-dev.yaml "stacks/Pulumi.$stack.yaml"
