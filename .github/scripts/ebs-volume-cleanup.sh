#!/usr/bin/env bash
# After `pulumi destroy` of an aws stack: delete the EBS volumes of worker claims that outlived it.
#
# The EBS CSI driver makes those volumes outside Pulumi's state and deletes them when their claims
# go; on destroy its add-on can go first, and a volume is then left `available` (and billed). The
# stack's StorageClass has the driver tag each volume with the stack (components/aws/eks.py); this
# deletes the detached ones carrying the stack's tags and the driver's own tag, nothing else.
set -euo pipefail
stack=${1:?usage: ebs-volume-cleanup.sh STACK REGION}
region=${2:?usage: ebs-volume-cleanup.sh STACK REGION}
filters=(
  "Name=tag:pulumi-stack,Values=${stack}"
  "Name=tag:app,Values=airflow-k8s"
  "Name=tag:ebs.csi.aws.com/cluster,Values=true"
  "Name=status,Values=available"
)
volumes=""
for attempt in 1 2 3; do  # a throttled or transient describe is retried, not a failed job
  if volumes=$(aws ec2 describe-volumes --region "$region" --filters "${filters[@]}" \
    --query "Volumes[].VolumeId" --output text); then
    break
  fi
  (( attempt == 3 )) && { echo "could not list volumes of ${stack}; run this again" >&2; exit 1; }
  sleep 10
done
if [[ -z "$volumes" || "$volumes" == "None" ]]; then
  echo "${stack}: no EBS volumes left behind"
  exit 0
fi
for volume in $volumes; do
  echo "${stack}: deleting EBS volume $volume left behind by the CSI driver"
  aws ec2 delete-volume --region "$region" --volume-id "$volume"
done
