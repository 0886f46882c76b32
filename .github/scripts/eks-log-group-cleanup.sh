#!/usr/bin/env bash
# After `pulumi destroy` of an aws stack: delete the EKS control-plane log group if EKS re-created it.
#
# The stack owns /aws/eks/<cluster>/cluster and destroy deletes it after the cluster, but log
# deliveries that arrive late re-create it under EKS's service-linked role (terraform-aws-eks
# issues 2446 and 2763). Left there, the next `up` of a stack of the same name fails with
# ResourceAlreadyExistsException. This watches for a few minutes and deletes it whenever it appears.
# A failed look-up (throttling, a network blip) is retried; only if none succeeds does it fail.
set -euo pipefail
stack=${1:?usage: eks-log-group-cleanup.sh STACK REGION [MINUTES]}
region=${2:?usage: eks-log-group-cleanup.sh STACK REGION [MINUTES] (scripts/stack-region.sh STACK)}
minutes=${3:-5}
pause=${CLEANUP_PAUSE_SECONDS:-30}
group="/aws/eks/airflow-${stack}/cluster"  # the cluster name the aws stack gives: airflow-<stack>
deadline=$(( $(date +%s) + minutes * 60 ))
checked=0 deleted=0 failures=0
while :; do
  if found=$(aws logs describe-log-groups --region "$region" --log-group-name-prefix "$group" \
    --query "logGroups[?logGroupName=='${group}'].logGroupName" --output text); then
    checked=1
    if [[ -n "$found" && "$found" != "None" ]]; then
      echo "EKS re-created $group after destroy: deleting it"
      aws logs delete-log-group --region "$region" --log-group-name "$group" && deleted=1 || true
    fi
  else
    failures=$(( failures + 1 ))
    echo "looking up $group failed (attempt $failures); trying again" >&2
  fi
  if (( $(date +%s) >= deadline )); then
    (( checked )) && break
    (( failures >= 5 )) && { echo "could not look up $group; run this script again" >&2; exit 1; }
  fi
  sleep "$pause"
done
if (( deleted )); then
  echo "$group: deleted"
else
  echo "$group: not present"
fi
