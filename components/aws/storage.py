"""AWS storage for Airflow: EFS as the ReadWriteMany DAG volume, S3 for task logs, and the pod
identity that lets Airflow's service accounts write those logs (no static keys anywhere)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws.eks import POD_IDENTITY_TRUST
from components.aws.network import DataClients, cluster_only_security_group
from components.endpoints import RemoteLogs
from components.k8s import CLAIM_SIZE, Manifest, labels, static_claim

NFS_PORT = 2049


class EfsDagVolume(pulumi.ComponentResource):
    """An encrypted EFS file system, a mount target per private subnet, an access point owned by the
    Airflow uid/gid, and a static PersistentVolume + claim bound to it: nothing is provisioned
    dynamically, so nothing exists outside Pulumi's state.

    Attributes:
        claim_name: the PersistentVolumeClaim's name (`<instance>-dags`), for the Airflow component.
        file_system_id: the EFS file system id.
        volume_handle: the CSI volume handle `<file system id>::<access point id>`, the stack's
            `dagVolume` output.
    """

    claim_name: pulumi.Output[str]
    file_system_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        vpc_id: pulumi.Input[str],
        subnet_ids: Sequence[pulumi.Input[str]],
        clients: DataClients,
        namespace: pulumi.Input[str],
        instance: str,
        uid: int,
        gid: int,
        size: str,
        protect: bool,
        tags: dict[str, str],
        driver: Sequence[pulumi.Resource] = (),
        kubernetes: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the file system, its mount targets and access point, and the PV and PVC.

        Args:
            name: Pulumi name prefix of the children (`<name>-fs`, `<name>-mount-<i>`, `<name>-pv`, ...).
            vpc_id: the VPC the security group is made in.
            subnet_ids: one mount target is made in each; EFS allows one per zone. The stack passes the
                VPC's private subnets.
            clients: the security groups whose members may mount over NFS (2049):
                `EksCluster.data_clients`.
            namespace: namespace of the claim (the Airflow namespace); the PV is cluster-scoped.
            instance: the Airflow instance name: PV and PVC are `<instance>-dags`, the file system's
                `Name` tag too.
            uid: POSIX user the access point forces on every request and owner of its root `/dags`
                (mode 0775); the stack passes Airflow's (50000).
            gid: POSIX group, likewise; the stack passes Airflow's (0).
            size: Kubernetes quantity for the PV's capacity and the claim's request (config
                `kubernetes.dagVolumeSize`); EFS is elastic, so it limits nothing.
            protect: Pulumi `protect` on the file system (config `aws.protect`).
            tags: tags on each AWS resource; the stack passes none, its provider's default tags cover them.
            driver: the EFS CSI driver the PV is mounted through: the PV is made after it and deleted
                before it (a pod cannot unmount without it). Only the PV waits: the file system and
                its mount targets start as soon as the network is there.
            kubernetes: the Kubernetes provider, for the PV and PVC only. Not in the component's
                `providers`: a component's children wait for every provider it lists, and the file
                system must not wait for the cluster.
            opts: options of the component; pass the AWS provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:aws:DagVolume", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        fs = aws.efs.FileSystem(
            f"{name}-fs",
            encrypted=True,
            throughput_mode="elastic",
            performance_mode="generalPurpose",
            tags={**tags, "Name": f"{instance}-dags"},
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        sg = cluster_only_security_group(
            self,
            name,
            vpc_id=vpc_id,
            port=NFS_PORT,
            clients=clients,
            description="Airflow DAG volume: NFS from the EKS cluster only",
            tags=tags,
        )
        targets = [
            aws.efs.MountTarget(
                f"{name}-mount-{i}", file_system_id=fs.id, subnet_id=subnet, security_groups=[sg.id], opts=child
            )
            for i, subnet in enumerate(subnet_ids)
        ]
        ap = aws.efs.AccessPoint(
            f"{name}-access-point",
            file_system_id=fs.id,
            posix_user={"uid": uid, "gid": gid},
            root_directory={
                "path": "/dags",
                "creation_info": {"owner_uid": uid, "owner_gid": gid, "permissions": "0775"},
            },
            tags=tags,
            opts=child,
        )
        pv_spec: Manifest = {
            "capacity": {"storage": size},  # EFS is elastic; Kubernetes requires a number
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",  # the file system's lifecycle is Pulumi's
            "storageClassName": "",
            "csi": {"driver": "efs.csi.aws.com", "volumeHandle": pulumi.Output.concat(fs.id, "::", ap.id)},
            "mountOptions": ["tls"],
        }
        pv = k8s.core.v1.PersistentVolume(
            f"{name}-pv",
            metadata={"name": f"{instance}-dags", "labels": labels(instance, "dags")},
            spec=pv_spec,
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes, depends_on=[*targets, *driver]),
        )
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-pvc",
            metadata={"name": f"{instance}-dags", "namespace": namespace, "labels": labels(instance, "dags")},
            spec=static_claim(pv.metadata["name"], size),
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes, ignore_changes=CLAIM_SIZE),
        )
        self.claim_name = pvc.metadata["name"]
        self.file_system_id = fs.id
        self.volume_handle = pulumi.Output.concat(fs.id, "::", ap.id)
        self.register_outputs({"file_system_id": fs.id, "claim_name": self.claim_name})


class S3TaskLogs(pulumi.ComponentResource):
    """A private, encrypted log bucket with expiry, an IAM role scoped to it, and EKS Pod Identity
    associations for the service accounts that read or write task logs.

    EKS Pod Identity rather than IRSA: no OIDC provider to create or keep in step with the cluster,
    associations are plain API objects that work the same on a created or an existing cluster, and
    the role's trust policy does not name the cluster.

    Attributes:
        remote_logs: base folder `s3://<bucket>/logs` and the key-less `aws_task_logs` connection,
            for the Airflow component.
        bucket_name: the bucket's generated name (prefix `airflow-logs-`).
    """

    remote_logs: RemoteLogs
    bucket_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        cluster_name: pulumi.Input[str],
        namespace: str,
        region: str,
        service_accounts: dict[str, pulumi.Input[str]],
        retention_days: int,
        protect: bool,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the bucket, its role and the Pod Identity associations.

        Args:
            name: Pulumi name prefix of the children (`<name>-bucket`, `<name>-role`,
                `<name>-identity-<component>`, ...).
            cluster_name: the EKS cluster the associations are made in; the stack passes the cluster
                component's `name` Output, so they wait for the cluster.
            namespace: namespace of the service accounts (config `kubernetes.namespace`).
            region: the bucket's region (the AWS provider's), written into the connection for boto3.
            service_accounts: component name -> ServiceAccount name; each gets an association with the
                role. The stack passes the components that read or write task logs.
            retention_days: days after which log objects expire (config `aws.logRetentionDays`).
            protect: Pulumi `protect` on the bucket (config `aws.protect`); when false, the bucket is
                emptied on destroy instead.
            tags: tags on each AWS resource; the stack passes none, its provider's default tags cover them.
            opts: options of the component; pass the AWS provider as `providers=[...]`.
        """
        super().__init__("airflow-k8s:aws:TaskLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix="airflow-logs-",
            # A test stack's bucket is emptied on destroy; production's is protected instead.
            force_destroy=not protect,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                {"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}, "bucket_key_enabled": True}
            ],
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-task-logs",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": retention_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "DenyInsecureTransport",
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "s3:*",
                                "Resource": [arn, f"{arn}/*"],
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        role = aws.iam.Role(f"{name}-role", assume_role_policy=json.dumps(POD_IDENTITY_TRUST), tags=tags, opts=child)
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=bucket.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": arn},
                            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{arn}/*"},
                        ],
                    }
                )
            ),
            opts=child,
        )
        associations = [
            aws.eks.PodIdentityAssociation(
                f"{name}-identity-{component}",
                cluster_name=cluster_name,
                namespace=namespace,
                service_account=sa,
                role_arn=role.arn,
                tags=tags,
                opts=child,
            )
            for component, sa in sorted(service_accounts.items())
        ]
        self.bucket_name = bucket.bucket
        self.remote_logs = RemoteLogs(
            base_folder=pulumi.Output.concat("s3://", bucket.bucket, "/logs"),
            conn_id="aws_task_logs",
            # No keys: boto3 picks up the pod identity credentials.
            connection=f"aws://?region_name={region}",
            # EKS injects the credentials when a pod is admitted: only if its association exists.
            ready=tuple(associations),
        )
        self.register_outputs({"bucket": bucket.bucket})
