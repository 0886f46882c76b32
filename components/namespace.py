"""The namespace, one ServiceAccount per component, and least-privilege RBAC.

Only the components that launch pods get rights on pods (the scheduler under KubernetesExecutor;
workers, KubernetesExecutor task pods and the triggerer when tasks use KubernetesPodOperator). A task
namespace holds KubernetesPodOperator pods: it enforces a Pod Security level a typical third-party
image meets (`baseline` by default), while Airflow's own namespace enforces `restricted`.

A pod that names no ServiceAccount runs as its namespace's `default` one. In both namespaces that
account is made token-less (a patch of the object Kubernetes creates) and nothing binds it to a
role, so such a pod, a KubernetesPodOperator pod by default, gets no API credentials at all. (This
is the one mechanism that works for any client that creates pods there, with no Airflow-side hook;
the Terraform provider's `kubernetes_default_service_account` exists for the same reason.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import Manifest, labels


def pod_security_labels(enforce: str) -> dict[str, str]:
    """Pod Security Admission labels: reject below `enforce`; warn and audit against `restricted`,
    so whoever creates a pod sees what would harden it."""
    return {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }


# Every pod this project makes meets `restricted`; Airflow's namespace enforces it.
PSA_LABELS = pod_security_labels("restricted")

# What KubernetesExecutor and KubernetesPodOperator need, and nothing more.
POD_LAUNCHER_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
]
# `airflow kubernetes cleanup-pods` lists pods by label and deletes finished ones
# (apache-airflow-providers-cncf-kubernetes 10.25.0, cli/kubernetes_command.py): it never creates one.
POD_CLEANER_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]},
]
# The api-server reads logs of running KubernetesExecutor task pods.
POD_LOG_READER_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


class AirflowNamespace(pulumi.ComponentResource):
    """Namespace(s), ServiceAccounts and the pod-launcher / log-reader Roles.

    The Airflow namespace enforces the `restricted` Pod Security Standard, the task namespace
    `task_pod_security`. Only components that call the Kubernetes API (pod launchers and log readers)
    get a ServiceAccount token mounted; each namespace's `default` ServiceAccount gets none.

    Attributes:
        namespace: name of the Airflow namespace (an Output, so dependants wait for it to exist).
        namespace_resource: the Namespace object itself.
        service_accounts: component name -> ServiceAccount name (`<instance>-<component>`); the
            stacks hand it to the Airflow component and give the task-log writers a cloud identity.
        task_namespace: name of the KubernetesPodOperator namespace, or None when there is none.
        task_service_account: the `<instance>-task-runner` ServiceAccount (no token, no API rights) in
            the task namespace, or None.
    """

    namespace: pulumi.Output[str]
    task_namespace: pulumi.Output[str] | None
    service_accounts: dict[str, pulumi.Output[str]]
    task_service_account: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        *,
        namespace: str,
        instance: str,
        components: Sequence[str],
        pod_launchers: Sequence[str] = (),
        task_pod_launchers: Sequence[str] = (),
        pod_log_readers: Sequence[str] = (),
        pod_cleaners: Sequence[str] = (),
        task_pod_cleaners: Sequence[str] = (),
        task_namespace: str | None = None,
        task_pod_security: str = "baseline",
        annotations: Mapping[str, Mapping[str, pulumi.Input[str]]] | None = None,
        namespace_labels: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Create the namespace(s), one ServiceAccount per component, and the Roles they need.

        The stacks call this through `stacks.common.make_namespace`, which passes the components
        table's (components/airflow/roster.py) lists for the configured executors and DAG source.

        Args:
            name: Pulumi name prefix of the children (`<name>-namespace`, `<name>-sa-<component>`,
                `<name>-role-pod-launcher`, ...).
            namespace: the Kubernetes namespace to create for Airflow (config `kubernetes.namespace`).
            instance: the Airflow instance name: the `app.kubernetes.io/instance` label and the prefix of
                every object name (`<instance>-<component>`, `<instance>-pod-launcher`, ...).
            components: the Airflow components that get a ServiceAccount each.
            pod_launchers: components that create pods in the Airflow namespace (the scheduler under
                KubernetesExecutor); bound to the pod-launcher Role there.
            task_pod_launchers: components that create KubernetesPodOperator pods; bound to a
                pod-launcher Role in `task_namespace` if it is set, else in the Airflow namespace.
            pod_log_readers: components that read pod logs (the api-server, for running
                KubernetesExecutor task pods); bound to the read-only pod-log-reader Role.
            pod_cleaners: components that delete finished KubernetesExecutor pods; bound to the
                list-and-delete pod-cleaner Role in the Airflow namespace.
            task_pod_cleaners: components that delete finished KubernetesPodOperator pods; bound to a
                pod-cleaner Role in `task_namespace` if it is set, else in the Airflow namespace.
            task_namespace: a second namespace for KubernetesPodOperator pods (config
                `kubernetes.taskNamespace`), with a `<instance>-task-runner` ServiceAccount that has no
                token and no API rights (for pods that name one); None: those pods run in the Airflow
                namespace.
            task_pod_security: the Pod Security level the task namespace enforces (config
                `kubernetes.taskPodSecurity`).
            annotations: ServiceAccount annotations by component name; components not listed get none.
                The Azure stack passes the workload identity client id of the task-log writers.
            namespace_labels: extra labels of the Airflow namespace (not the task namespace), for a
                controller that acts on the namespace's pods (the AWS stack's ALB readiness gates).
            opts: options of the component; pass the Kubernetes provider as `providers=[...]`.

        Raises:
            ValueError: a member of `pod_launchers`, `task_pod_launchers` or `pod_log_readers` is not
                one of `components` (checked before any resource is registered).
        """
        for role, members in (
            ("pod_launchers", pod_launchers),
            ("task_pod_launchers", task_pod_launchers),
            ("pod_log_readers", pod_log_readers),
            ("pod_cleaners", pod_cleaners),
            ("task_pod_cleaners", task_pod_cleaners),
        ):
            unknown = sorted(set(members) - set(components))
            if unknown:
                raise ValueError(f"{role}: {unknown} are not components ({sorted(components)})")
        super().__init__("airflow-k8s:kubernetes:Namespace", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        annotations = annotations or {}

        self.namespace_resource = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": namespace,
                "labels": {**labels(instance, "namespace"), **PSA_LABELS, **dict(namespace_labels or {})},
            },
            opts=child,
        )
        self.namespace = self.namespace_resource.metadata["name"]
        self._tokenless_default(f"{name}-default-sa", self.namespace_resource, instance)

        api_callers = (
            set(pod_launchers)
            | set(task_pod_launchers)
            | set(pod_log_readers)
            | set(pod_cleaners)
            | set(task_pod_cleaners)
        )
        self.service_accounts = {}
        for comp in components:
            sa = k8s.core.v1.ServiceAccount(
                f"{name}-sa-{comp}",
                metadata={
                    "name": f"{instance}-{comp}",
                    "namespace": self.namespace,
                    "labels": labels(instance, comp),
                    "annotations": dict(annotations.get(comp, {})),
                },
                # A token is mounted only where a component talks to the Kubernetes API.
                automount_service_account_token=comp in api_callers,
                opts=child,
            )
            self.service_accounts[comp] = sa.metadata["name"]

        main_launchers = list(pod_launchers)
        main_cleaners = list(pod_cleaners)
        self.task_namespace = None
        self.task_service_account = None
        if task_namespace:
            task_ns = k8s.core.v1.Namespace(
                f"{name}-task-namespace",
                metadata={
                    "name": task_namespace,
                    "labels": {**labels(instance, "task-namespace"), **pod_security_labels(task_pod_security)},
                },
                opts=child,
            )
            self.task_namespace = task_ns.metadata["name"]
            self._tokenless_default(f"{name}-task-default-sa", task_ns, instance)
            runner = k8s.core.v1.ServiceAccount(
                f"{name}-sa-task-runner",
                metadata={
                    "name": f"{instance}-task-runner",
                    "namespace": self.task_namespace,
                    "labels": labels(instance, "task-runner"),
                },
                automount_service_account_token=False,
                opts=child,
            )
            self.task_service_account = runner.metadata["name"]
            self._role(
                name,
                "task-pod-launcher",
                f"{instance}-pod-launcher",
                self.task_namespace,
                POD_LAUNCHER_RULES,
                task_pod_launchers,
                instance,
            )
            self._role(
                name,
                "task-pod-cleaner",
                f"{instance}-pod-cleaner",
                self.task_namespace,
                POD_CLEANER_RULES,
                task_pod_cleaners,
                instance,
            )
        else:
            main_launchers += [c for c in task_pod_launchers if c not in main_launchers]
            main_cleaners += [c for c in task_pod_cleaners if c not in main_cleaners]

        self._role(
            name,
            "pod-launcher",
            f"{instance}-pod-launcher",
            self.namespace,
            POD_LAUNCHER_RULES,
            main_launchers,
            instance,
        )
        self._role(
            name,
            "pod-cleaner",
            f"{instance}-pod-cleaner",
            self.namespace,
            POD_CLEANER_RULES,
            main_cleaners,
            instance,
        )
        self._role(
            name,
            "pod-log-reader",
            f"{instance}-pod-log-reader",
            self.namespace,
            POD_LOG_READER_RULES,
            pod_log_readers,
            instance,
        )
        self.register_outputs({"namespace": self.namespace, "service_accounts": self.service_accounts})

    def _tokenless_default(self, resource_name: str, namespace: k8s.core.v1.Namespace, instance: str) -> None:
        """Patch the namespace's `default` ServiceAccount (the controller creates it) to mount no token.

        Server-side apply owns just this field: the controller's object stays, and deleting the patch
        gives the field back. Applied before the controller has made the account, it creates it.
        Giving the field back is itself an apply into the namespace, which fails once the namespace
        is gone, so the patch is deleted with its namespace and not undone on its own then.
        """
        k8s.core.v1.ServiceAccountPatch(
            resource_name,
            metadata={
                "name": "default",
                "namespace": namespace.metadata["name"],
                "labels": labels(instance, "default-account"),
            },
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self, deleted_with=namespace),
        )

    def _role(
        self,
        name: str,
        suffix: str,
        role_name: str,
        namespace: pulumi.Input[str],
        rules: list[Manifest],
        members: Sequence[str],
        instance: str,
    ) -> None:
        """A Role and its RoleBinding to `members`' ServiceAccounts; nothing when nobody needs it."""
        if not members:
            return
        child = pulumi.ResourceOptions(parent=self)
        role = k8s.rbac.v1.Role(
            f"{name}-role-{suffix}",
            metadata={"name": role_name, "namespace": namespace, "labels": labels(instance, "rbac")},
            rules=rules,
            opts=child,
        )
        role_ref: Manifest = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata["name"]}
        k8s.rbac.v1.RoleBinding(
            f"{name}-binding-{suffix}",
            metadata={"name": role_name, "namespace": namespace, "labels": labels(instance, "rbac")},
            role_ref=role_ref,
            subjects=[
                {"kind": "ServiceAccount", "name": self.service_accounts[m], "namespace": self.namespace}
                for m in sorted(members)
            ],
            opts=child,
        )
