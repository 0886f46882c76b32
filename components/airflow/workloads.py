"""The one way this package makes a long-running workload: a Deployment or a StatefulSet with its
labels, selector and disruption budget, and the Services that expose a component's ports (which the
components table declares)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components.airflow.pods import PodFactory
from components.airflow.roster import Roster
from components.k8s import Manifest, labels, selector, spread

# Never fewer ready replicas than asked for during a rollout: one extra pod at a time.
ROLLING_UPDATE: Manifest = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
# What one pod may take to be scheduled, pull its image and pass its startup probe.
POD_START_SECONDS = 300
# pulumi-kubernetes' default wait for a Deployment or StatefulSet.
PROVIDER_DEFAULT_MINUTES = 10


def rollout_minutes(replicas: int, grace_seconds: int) -> int:
    """How long `pulumi up` waits for a rollout: both workload kinds here replace one pod at a time,
    and each old pod may take its whole grace period to stop (a worker finishing its tasks)."""
    return max(PROVIDER_DEFAULT_MINUTES, math.ceil(max(replicas, 1) * (grace_seconds + POD_START_SECONDS) / 60))


def claims_suffix(claim_templates: list[Manifest]) -> str:
    """A short hash of a StatefulSet's claim templates, for its name: the templates cannot change in
    place, and a replacement under the same name would delete every pod at once first."""
    return hashlib.sha256(json.dumps(claim_templates, sort_keys=True).encode()).hexdigest()[:6]


@dataclass
class Workload:
    """What varies between the workloads; everything else is the same for all of them.

    Attributes:
        component: the component (labels, selector, object name `<instance>-<component>`).
        replicas: replicas; two or more also get a PodDisruptionBudget.
        pod: the pod spec (from PodFactory).
        kind: Deployment, or StatefulSet for components whose pods need a stable DNS name.
        strategy: a Deployment's update strategy; None leaves Kubernetes' default.
        revision_history: old ReplicaSets/revisions kept; None leaves Kubernetes' default.
        spread: spread replicas over nodes and zones (soft).
        service_name: a StatefulSet's governing (headless) Service, by name: `spec.serviceName`
            replaces a StatefulSet, so it must never be an unknown Output at preview.
        claim_templates: a StatefulSet's volume claim templates; deleted with it.
        depends_on: what must be ready first (the migration Job).
        autoscaled: KEDA's HPA owns `spec.replicas` (then `replicas` is only the count at creation).
        max_replicas: the most replicas an autoscaled workload may have (its PDB and rollout wait).
        force: take fields another field manager changed (server-side apply's force): a worker group
            whose autoscaling is switched off takes `spec.replicas` back from KEDA's HPA.
    """

    component: str
    replicas: int
    pod: Manifest
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    strategy: Manifest | None = field(default_factory=lambda: dict(ROLLING_UPDATE))
    revision_history: int | None = 5
    spread: bool = True
    service_name: str | None = None
    claim_templates: list[Manifest] = field(default_factory=list)
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    autoscaled: bool = False
    max_replicas: int | None = None
    force: bool = False

    @property
    def most(self) -> int:
        return self.max_replicas if self.autoscaled and self.max_replicas is not None else self.replicas


# What pulumi-kubernetes does with an ignoreChanges path under server-side apply
# (provider/pkg/await/await.go, handleSSAIgnoreFields, v4.32): a field another manager owns alone is
# dropped from the apply request, anything else is sent with its live value. So with `spec.replicas`
# ignored, Pulumi never resets a count KEDA's HPA set (the HPA owns the field through the `scale`
# subresource once it changes it), and until then re-sends the live count, never the default of 1.
AUTOSCALED_IGNORE = ["spec.replicas"]
# The provider's annotation for a forced apply (otherwise a conflict with another field manager,
# e.g. the HPA's `kube-controller-manager` on `spec.replicas`, fails the update).
PATCH_FORCE = "pulumi.com/patchForce"


class WorkloadBuilder:
    """Makes workloads and Services as children of one component resource."""

    def __init__(
        self, parent: pulumi.Resource, name: str, instance: str, namespace: pulumi.Input[str], roster: Roster
    ) -> None:
        self._parent = parent
        self._name = name
        self._instance = instance
        self._namespace = namespace
        self._roster = roster

    def _metadata(self, component: str, suffix: str = "") -> Manifest:
        return {
            "name": f"{self._instance}-{component}{suffix}",
            "namespace": self._namespace,
            "labels": labels(self._instance, component),
        }

    def workload(self, w: Workload, pods: PodFactory) -> pulumi.CustomResource:
        pod = dict(w.pod)
        # The program's soft spread, unless the component's placement gives its own.
        if w.spread and "topologySpreadConstraints" not in pod:
            pod["topologySpreadConstraints"] = spread(self._instance, w.component)
        spec: Manifest = {
            "replicas": w.replicas,
            "selector": {"matchLabels": selector(self._instance, w.component)},
            "template": {"metadata": pods.meta(w.component), "spec": pod},
        }
        if w.revision_history is not None:
            spec["revisionHistoryLimit"] = w.revision_history
        minutes = rollout_minutes(w.most, int(pod.get("terminationGracePeriodSeconds", 30)))
        opts = pulumi.ResourceOptions(
            parent=self._parent,
            depends_on=w.depends_on,
            custom_timeouts=pulumi.CustomTimeouts(create=f"{minutes}m", update=f"{minutes}m"),
            ignore_changes=list(AUTOSCALED_IGNORE) if w.autoscaled else None,
        )
        resource: pulumi.CustomResource
        if w.kind == "Deployment":
            if w.strategy is not None:
                spec["strategy"] = w.strategy
            resource = k8s.apps.v1.Deployment(
                f"{self._name}-{w.component}", metadata=self._metadata(w.component), spec=spec, opts=opts
            )
        else:
            spec["serviceName"] = w.service_name
            spec["podManagementPolicy"] = "Parallel"
            suffix = ""
            if w.claim_templates:
                spec["volumeClaimTemplates"] = w.claim_templates
                # `pulumi destroy` must leave no volume behind.
                spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Delete"}
                # A new claim shape is a new set beside the old one, whose pods then drain.
                suffix = f"-{claims_suffix(w.claim_templates)}"
            metadata = self._metadata(w.component, suffix)
            if w.force:
                metadata["annotations"] = {PATCH_FORCE: "true"}
            resource = k8s.apps.v1.StatefulSet(f"{self._name}-{w.component}", metadata=metadata, spec=spec, opts=opts)
        if w.most >= 2:
            budget: Manifest = {"maxUnavailable": 1, "selector": {"matchLabels": selector(self._instance, w.component)}}
            k8s.policy.v1.PodDisruptionBudget(
                f"{self._name}-{w.component}-pdb",
                metadata=self._metadata(w.component),
                spec=budget,
                opts=pulumi.ResourceOptions(parent=self._parent),
            )
        return resource

    def service(
        self, component: str, *, headless: bool = False, service_type: str | None = "ClusterIP", row: str | None = None
    ) -> k8s.core.v1.Service:
        """A Service for every port the table gives `component`. Headless (with not-ready pods
        published) gives each StatefulSet pod a DNS name, for fetching logs from it."""
        spec: Manifest = {
            "selector": selector(self._instance, component),
            "ports": [
                {"name": p.name, "port": p.number, "targetPort": p.name, "protocol": p.protocol}
                for p in self._roster.ports(row or component)
            ],
        }
        if headless:
            spec["clusterIP"] = "None"
            spec["publishNotReadyAddresses"] = True
        elif service_type is not None:
            spec["type"] = service_type
        return k8s.core.v1.Service(
            f"{self._name}-{component}-svc",
            metadata=self._metadata(component),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self._parent),
        )
