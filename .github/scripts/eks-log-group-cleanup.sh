#!/usr/bin/env bash
# After `pulumi destroy` of an aws stack: delete the EKS control-plane log group if EKS re-created it.
#
# The stack owns /aws/eks/<cluster>/cluster and destroy deletes it after the cluster, but log
# deliveries that arrive late re-create it under EKS's service-linked role (terraform-aws-eks
# issues 2446 and 2763). Left there, the next `up` of a stack of the same name fails with
# ResourceAlreadyExistsException. This watches for a few minutes and deletes it whenever it appears.
set -euo pipefail
stack=${1:?usage: eks-log-group-cleanup.sh STACK [REGION] [MINUTES]}
region=${2:-eu-west-1}
minutes=${3:-5}
group="/aws/eks/airflow-${stack}/cluster"  # the cluster name the aws stack gives: airflow-<stack>
deadline=$(( $(date +%s) + minutes * 60 ))
while :; do
  found=$(aws logs describe-log-groups --region "$region" --log-group-name-prefix "$group" \
    --query "logGroups[?logGroupName=='${group}'].logGroupName" --output text)
  if [[ -n "$found" && "$found" != "None" ]]; then
    echo "EKS re-created $group after destroy: deleting it"
    aws logs delete-log-group --region "$region" --log-group-name "$group" || true
  fi
  (( $(date +%s) >= deadline )) && break
  sleep 30
done
echo "$group: not present"
