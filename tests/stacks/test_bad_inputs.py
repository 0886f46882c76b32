"""Bad input fails before any resource is registered, with a message naming the key and what is allowed."""

from __future__ import annotations

import pytest

from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.cli import main as render_main
from stacks.tooling.render import RenderError, load_stack_config

# A public host key (ssh-keygen -t ed25519), as a known_hosts line needs one.
HOST_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIO82q9ycKeHMHVHDklL8NgwODOqs7WDXBb6Cc7yNfteg"

CASES = [
    # (override, expected key path in message, expected explanation fragment)
    ("airflow.executor=LocalExecutor", "airflow-k8s:airflow.executor", "'CeleryExecutor', 'KubernetesExecutor'"),
    ("airflow.scheduler.replicas=0", "airflow-k8s:airflow.scheduler.replicas", "greater than or equal to 1"),
    (
        "airflow.scheduler.replica=2",
        "airflow-k8s:airflow.scheduler.replica",
        "not a known key (allowed: extraContainers, extraEnv, extraEnvFrom, extraInitContainers, extraVolumeMounts, "
        "extraVolumes, placement, replicas, resources)",
    ),
    (
        "nope=1",
        "airflow-k8s:nope",
        "not a known key (allowed: airflow, aws, azure, broker, cloud, database, kubernetes, pgbouncer, ui)",
    ),
    # Issue 15.2: PgBouncer's settings.
    ("pgbouncer.replicas=0", "airflow-k8s:pgbouncer.replicas", "greater than or equal to 1"),
    ("pgbouncer.defaultPoolSize=0", "airflow-k8s:pgbouncer.defaultPoolSize", "greater than or equal to 1"),
    ("pgbouncer.image=apache/airflow:latest", "airflow-k8s:pgbouncer.image", "must name an exact tag"),
    ("pgbouncer.exporterImage=pgbouncer-exporter", "airflow-k8s:pgbouncer.exporterImage", "must name an exact tag"),
    (
        "pgbouncer.poolMode=session",
        "airflow-k8s:pgbouncer.poolMode",
        "not a known key (allowed: defaultPoolSize, enabled, exporterImage, image, maxClientConn, "
        "maxPreparedStatements, port, replicas, reservePoolSize, reservePoolTimeout, resources)",
    ),
    ("cloud=gcp", "airflow-k8s:cloud", "must be one of 'local', 'aws', 'azure'"),
    ("kubernetes.context=", "airflow-k8s:kubernetes.context", "needs a kubeconfig context name"),
    ("kubernetes.namespace=Airflow_NS", "airflow-k8s:kubernetes.namespace", "must match"),
    ("kubernetes.taskPodSecurity=privileged", "airflow-k8s:kubernetes.taskPodSecurity", "'baseline', 'restricted'"),
    # The default task namespace is `<namespace>-tasks`: it must still be a DNS label.
    (f"kubernetes.namespace={'a' * 60}", "airflow-k8s:kubernetes.taskNamespace", "longer than 63 characters"),
    ("airflow.image.tag=latest", "airflow-k8s:airflow.image.tag", "exact tag"),
    ("database.mode=external", "airflow-k8s:database.external", "mode 'external' needs 'external'"),
    ("database.mode=cloud", "airflow-k8s:database.mode", "must be one of 'inCluster', 'external'"),
    ("broker.external.port=70000", "airflow-k8s:broker.external.port", "less than or equal to 65535"),
    ("airflow.dags={source: gitSync}", "airflow-k8s:airflow.dags.git", "needs 'git'"),
    ("airflow.dags.git.repo=github.com/x/y", "airflow-k8s:airflow.dags.git.repo", "must be a git URL"),
    # Issue 14.5: an ssh URL cannot authenticate without a deploy key and host keys, and a key is
    # for ssh URLs only.
    ("airflow.dags.git.repo=git@github.com:o/dags.git", "airflow-k8s:airflow.dags.git.ssh", "is required"),
    ("airflow.dags.git.repo=ssh://git@h.example/dags.git", "airflow-k8s:airflow.dags.git.ssh", "is required"),
    ("airflow.dags.git.ssh.secret=git-creds", "airflow-k8s:airflow.dags.git.ssh", "only applies to an ssh repo"),
    (
        "airflow.dags.git={repo: 'git@h.example:o/d.git', ssh: {secret: git-creds, knownHosts: '"
        f"h.example ssh-ed25519 {HOST_KEY}'}}}}",
        "airflow-k8s:airflow.dags.git.ssh.knownHosts",
        "comes from Secret 'git-creds'",
    ),
    (
        "airflow.dags.git={repo: 'git@h.example:o/d.git', ssh: {secret: Git_Creds}}",
        "airflow-k8s:airflow.dags.git.ssh.secret",
        "must match",
    ),
    (
        "airflow.dags.git={repo: 'git@h.example:o/d.git', ssh: {}}",
        "airflow-k8s:airflow.dags.git.ssh.privateKey",
        "is required (or name an existing Secret",
    ),
    (
        "airflow.dags.git={repo: 'git@h.example:o/d.git', credentialsSecret: c, ssh: {secret: s}}",
        "airflow-k8s:airflow.dags.git.credentialsSecret",
        "an ssh repo authenticates with ssh",
    ),
    # A deploy key in plain text in the stack file: refused, naming the key (never the value).
    (
        "airflow.dags.git={repo: 'git@h.example:o/d.git', ssh: {privateKey: 'not-even-a-key', knownHosts: x}}",
        "airflow-k8s:airflow.dags.git.ssh.privateKey",
        "must be a Pulumi secret, not plain text",
    ),
    (
        "airflow.workers.resources.memoryLimit=lots",
        "airflow-k8s:airflow.workers.resources.memoryLimit",
        "not a Kubernetes quantity",
    ),
    ("airflow.auth.manager=ldap", "airflow-k8s:airflow.auth.manager", "must be one of 'fab', 'simple'"),
    ("airflow.executor=KubernetesExecutor", None, None),  # valid on its own: control for the next case
    ("airflow.variables={bad-name: x}", "airflow-k8s:airflow.variables", "letters, digits and '_'"),
    ("airflow.config={Core.Parallelism: '4'}", "airflow-k8s:airflow.config", "'section.option'"),
    # An unknown key inside an optional object still lists what is allowed there.
    (
        "database={mode: external, external: {host: h, password: p, hots: x}}",
        "airflow-k8s:database.external.hots",
        "not a known key (allowed: ca, host, maxConnections, name, password, port, sslmode, user)",
    ),
    # Issue 10.11: a worker limit that cannot hold its concurrency (the local stack runs 8).
    (
        "airflow.workers.resources.memoryLimit=1Gi",
        "airflow-k8s:airflow.workers.resources.memoryLimit",
        "cannot hold 8 concurrent tasks: at least",
    ),
    ("airflow.migrationTimeoutMinutes=0", "airflow-k8s:airflow.migrationTimeoutMinutes", "greater than or equal to 1"),
    # Issue 13, intent silently dropped: a misspelt project namespace or a provider namespace the
    # stack's explicit providers never read.
    ("airflow-k8:airflow.executor=CeleryExecutor", "airflow-k8:airflow", "did you mean airflow-k8s:airflow?"),
    ("Airflow-K8s:cloud=local", "Airflow-K8s:cloud", "did you mean airflow-k8s:cloud?"),
    ("team:database.mode=external", "team:database", "did you mean airflow-k8s:database?"),
    ("aws:region=us-east-1", "aws:region", "takes airflow-k8s:aws.region"),
    ("azure-native:location=westeurope", "azure-native:location", "takes airflow-k8s:azure.region"),
    ("kubernetes:context=kind-x", "kubernetes:context", "takes airflow-k8s:kubernetes.context"),
    # Issue 13, intent silently dropped: an external server given while its mode still says inCluster.
    ("database.external={host: db, password: p}", "airflow-k8s:database.external", "set mode: external"),
    ("broker.external={host: redis}", "airflow-k8s:broker.external", "set mode: external"),
    # Issue 13, injection through free text: a host carries no path, query, fragment or port into a URL.
    *[
        (
            f"database={{mode: external, external: {{host: '{host}', password: p}}}}",
            "airflow-k8s:database.external.host",
            why,
        )
        for host, why in [
            ("db.example.com/x?sslmode=disable#", "not a host name or IP address"),
            ("db.example.com:5432", "the port goes in 'port'"),
            ("postgres://db.example.com", "not a host name or IP address"),
            ("db example.com", "not a host name or IP address"),
            ("", "at least 1 character"),
        ]
    ],
    ("broker={mode: external, external: {host: 'r:6379'}}", "airflow-k8s:broker.external.host", "'port'"),
    (
        'database={mode: external, external: {host: db, user: "air\\nflow", password: p}}',
        "airflow-k8s:database.external.user",
        "control character",
    ),
    (
        'database={mode: external, external: {host: db, password: "pass\\x00word"}}',
        "airflow-k8s:database.external.password",
        "control character",
    ),
    ('kubernetes.context="kind\\nx"', "airflow-k8s:kubernetes.context", "control character"),
    # Issue 13, settings that override what the program generates, or put a secret in plain text.
    *[
        (f"airflow.config={{{option}: x}}", "airflow-k8s:airflow.config", why)
        for option, why in [
            ("core.executor", "set by the program (airflow.executor)"),
            ("core.fernet_key", "set by the program (a generated secret)"),
            ("database.sql_alchemy_conn", "set by the program"),
            ("celery.broker_url", "set by the program"),
            ("api.secret_key", "set by the program"),
            ("logging.remote_base_log_folder", "set by the program"),
            ("smtp.smtp_password", "looks like a secret"),
            ("webserver.secret_key", "looks like a secret"),
            ("core.fernet_key_cmd", "looks like a secret"),
            ("secrets.backend_token", "looks like a secret"),
        ]
    ],
    ('airflow.config={core.parallelism: "4\\n5"}', "airflow-k8s:airflow.config", "control character"),
    # Issue 13, values that would only fail at deploy time.
    *[
        (f"airflow.workers.resources.{key}={value}", f"airflow-k8s:airflow.workers.resources.{key}", why)
        for key, value, why in [
            ("memoryLimit", "1.2.3Gi", "is not a Kubernetes quantity such as"),
            ("memoryRequest", "0", "must be more than zero"),
            ("cpuRequest", "0m", "must be more than zero"),
            ("cpuRequest", "-1", "is not a Kubernetes quantity such as"),
            ("memoryRequest", "64Gi", "above memoryLimit"),
        ]
    ],
    (
        "airflow.scheduler.resources={cpuRequest: '2', cpuLimit: 500m}",
        "airflow-k8s:airflow.scheduler.resources.cpuRequest",
        "above cpuLimit",
    ),
    ("kubernetes.dagVolumeSize=1.5.Gi", "airflow-k8s:kubernetes.dagVolumeSize", "is not a Kubernetes quantity such as"),
    *[
        ("airflow.image.repository=" + repo, "airflow-k8s:airflow.image.repository", why)
        for repo, why in [
            ("Apache/Airflow", "not an image repository"),
            ("''", "not an image repository"),
            ("apache/airflow:3.3.2", "carries a tag or digest"),
            ("apache/airflow@sha256:0123", "carries a tag or digest"),
            ("ghcr.io/Team/airflow", "path components in lower case"),
        ]
    ],
    *[
        ("airflow.dags.folder=" + folder, "airflow-k8s:airflow.dags.folder", why)
        for folder, why in [
            ("''", "must be an absolute path"),
            ("dags", "must be an absolute path"),
            ("/opt/airflow/../dags", "must be an absolute path"),
            ("/opt/airflow", "would hide a directory"),
            ("/etc/dags", "would hide a directory"),
        ]
    ],
    *[
        (f"kubernetes.{key}={ns}", f"airflow-k8s:kubernetes.{key}", "belongs to the cluster")
        for key in ("namespace", "taskNamespace")
        for ns in ("kube-system", "default")
    ],
    # Issue 13, intent dropped: a setting that names something to sync or connect to, which the chosen
    # mode would ignore, is an error (a setting that only tunes an absent piece is a warning, below).
    (
        "airflow.dags={source: image, git: {repo: 'https://github.com/a/b.git'}}",
        "airflow-k8s:airflow.dags.git",
        "source 'image' takes the DAGs baked into the image",
    ),
    # Issue 13, case collisions: both would become AIRFLOW_VAR_FOO.
    ("airflow.variables={foo: a, FOO: b}", "airflow-k8s:airflow.variables", "differ only in case"),
    # Issue 15.6: pools as Airflow's slot_pool takes them (slots >= -1, a 32-bit integer), names
    # that keep their pool metrics apart, no case twins; connections and secret variables as Pulumi
    # secrets only, and a Variable either plain or secret.
    ("airflow.pools={etl: {slots: -2}}", "airflow-k8s:airflow.pools.etl.slots", "greater than or equal to -1"),
    ("airflow.pools={etl: {slots: 2147483648}}", "airflow-k8s:airflow.pools.etl.slots", "less than or equal to"),
    ("airflow.pools={etl: {}}", "airflow-k8s:airflow.pools.etl.slots", "is required"),
    ("airflow.pools={etl: {slots: 1, size: 2}}", "airflow-k8s:airflow.pools.etl.size", "is not a known key"),
    ("airflow.pools={etl: {slots: many}}", "airflow-k8s:airflow.pools.etl.slots", "valid integer"),
    ("airflow.pools={'etl jobs': {slots: 1}}", "airflow-k8s:airflow.pools", "letters, digits, '_', '.' or '-'"),
    (f"airflow.pools={{{'p' * 257}: {{slots: 1}}}}", "airflow-k8s:airflow.pools", "must be 1-256"),
    ("airflow.pools={ETL: {slots: 1}, etl: {slots: 2}}", "airflow-k8s:airflow.pools", "differ only in case"),
    (
        'airflow.pools={etl: {slots: 1, description: "a\\nb"}}',
        "airflow-k8s:airflow.pools.etl.description",
        "control character",
    ),
    (
        "airflow.connections={dw: 'postgresql://u:p@h/d'}",
        "airflow-k8s:airflow.connections.dw",
        "must be a Pulumi secret, not plain text: set it with `pulumi config set --secret --path 'airflow.connections.dw'",
    ),
    (
        "airflow.secretVariables={token: abc}",
        "airflow-k8s:airflow.secretVariables.token",
        "`pulumi config set --secret --path 'airflow.secretVariables.token' ...`",
    ),
    (
        "airflow={variables: {token: a}, secretVariables: {TOKEN: {secure: b}}}",
        "airflow-k8s:airflow.secretVariables.TOKEN",
        "is also in airflow.variables ('token')",
    ),
    (
        "airflow={secretVariables: {bad-name: {secure: b}}}",
        "airflow-k8s:airflow.secretVariables",
        "letters, digits and '_'",
    ),
    # Issue 14.3: placement, typed as the Kubernetes API types it.
    *[
        (f"airflow.{where}.tolerations=[{t}]", f"airflow-k8s:airflow.{where}.tolerations.0.{key}", why)
        for where in ("placement", "taskPods.placement", "scheduler.placement")
        for t, key, why in [
            ("{key: gpu, operator: Matches}", "operator", "'Exists', 'Equal'"),
            ("{key: gpu, effect: NoRun}", "effect", "'NoSchedule', 'PreferNoSchedule', 'NoExecute'"),
            ("{key: gpu, operator: Exists, value: x}", "value", "must be empty with operator 'Exists'"),
            ("{operator: Equal, value: x}", "operator", "must be 'Exists' when key is empty"),
            ("{key: gpu, effect: NoSchedule, tolerationSeconds: 5}", "tolerationSeconds", "only applies to effect"),
            ("{key: 'bad key!'}", "key", "not a Kubernetes qualified name"),
            ("{key: gpu, tolerations: 1}", "tolerations", "not a known key (allowed: effect, key, operator,"),
        ]
    ],
    ("airflow.placement.nodeSelector={pool: 'a b'}", "airflow-k8s:airflow.placement.nodeSelector.pool", "must match"),
    (
        "airflow.placement.priorityClassName=High_Priority",
        "airflow-k8s:airflow.placement.priorityClassName",
        "must match",
    ),
    (
        "airflow.workers.placement.affinity={nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: "
        "[{weight: 500, preference: {}}]}}",
        "airflow-k8s:airflow.workers.placement.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution.0.weight",
        "less than or equal to 100",
    ),
    (
        "airflow.workers.placement.affinity={nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
        "{nodeSelectorTerms: [{matchExpressions: [{key: k, operator: In}]}]}}}",
        "airflow-k8s:airflow.workers.placement.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms.0.matchExpressions.0.values",
        "needs at least one value",
    ),
    (
        "airflow.scheduler.placement.topologySpreadConstraints=[{maxSkew: 1, topologyKey: zone, "
        "whenUnsatisfiable: ScheduleAnyway, minDomains: 2}]",
        "airflow-k8s:airflow.scheduler.placement.topologySpreadConstraints.0.minDomains",
        "only applies to whenUnsatisfiable 'DoNotSchedule'",
    ),
    # Issue 14.4: escape hatches never shadow or collide with what the program generates.
    *[
        (
            f"airflow.scheduler.extraEnv=[{{name: {name}, value: x}}]",
            "airflow-k8s:airflow.scheduler.extraEnv.0.name",
            why,
        )
        for name, why in [
            ("AIRFLOW__CORE__EXECUTOR", "set by the program (airflow.executor)"),
            ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "set by the program"),
            ("AIRFLOW__API_AUTH__JWT_SECRET", "set by the program (a generated secret)"),
            ("AIRFLOW_HOME", "set by the program"),
            ("DUMB_INIT_SETSID", "set by the program"),
            ("AIRFLOW__AZURE_REMOTE_LOGGING__REMOTE_WASB_LOG_CONTAINER", "set by the program (the azure stack"),
            ("AIRFLOW_CONN_WAREHOUSE", "looks like a secret"),
            ("GITHUB_TOKEN", "looks like a secret"),
            ("AIRFLOW__SMTP__SMTP_PASSWORD", "looks like a secret"),
        ]
    ],
    (
        "airflow.scheduler.extraEnv=[{name: X, value: a, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]",
        "airflow-k8s:airflow.scheduler.extraEnv.0.value",
        "exactly one of value or valueFrom",
    ),
    (
        "airflow.scheduler.extraEnv=[{name: X, valueFrom: {secretKeyRef: {name: s, key: k}, fieldRef: {fieldPath: a}}}]",
        "airflow-k8s:airflow.scheduler.extraEnv.0.valueFrom",
        "exactly one of secretKeyRef, configMapKeyRef",
    ),
    (
        "airflow.scheduler.extraEnv=[{name: X, value: a}, {name: X, value: b}]",
        "airflow-k8s:airflow.scheduler.extraEnv.1",
        "declared twice",
    ),
    (
        "airflow.config={core.parallelism: '8'}",
        None,
        None,
    ),
    (
        "airflow={config: {core.parallelism: '8'}, workers: {extraEnv: [{name: AIRFLOW__CORE__PARALLELISM, value: '4'}]}}",
        "airflow-k8s:airflow.workers.extraEnv.0.name",
        "already set by airflow.config 'core.parallelism'",
    ),
    (
        "airflow.workers.extraEnv=[{name: AIRFLOW_CONN_AWS_TASK_LOGS, valueFrom: {secretKeyRef: {name: s, key: k}}}]",
        "airflow-k8s:airflow.workers.extraEnv.0.name",
        "set by the program (the aws stack's task logs)",
    ),
    (
        "airflow.workers.extraEnvFrom=[{secretRef: {name: a}, configMapRef: {name: b}}]",
        "airflow-k8s:airflow.workers.extraEnvFrom.0",
        "exactly one of secretRef or configMapRef",
    ),
    (
        "airflow.workers.extraVolumeMounts=[{name: nowhere, mountPath: /opt/x}]",
        "airflow-k8s:airflow.workers.extraVolumeMounts.0.name",
        "'nowhere' is not in extraVolumes (declared: none)",
    ),
    *[
        (
            f"airflow.workers={{extraVolumes: [{{name: v, emptyDir: {{}}}}], extraVolumeMounts: [{{name: v, mountPath: {path}}}]}}",
            "airflow-k8s:airflow.workers.extraVolumeMounts.0.mountPath",
            why,
        )
        for path, why in [
            ("/opt/airflow/dags", "collides with the DAG folder"),
            ("/opt/airflow/dags/extra", "collides with the DAG folder"),
            ("/opt/airflow/config", "collides with '/opt/airflow/config'"),
            ("/tmp", "collides with '/tmp'"),
            ("/opt/airflow", "would hide Airflow's home"),
            ("/opt", "would hide Airflow's home"),
            ("/opt/airflow/logs/x", "collides with '/opt/airflow/logs'"),
        ]
    ],
    *[
        (
            f"airflow.triggerer.extraVolumes=[{{name: {name}, emptyDir: {{}}}}]",
            "airflow-k8s:airflow.triggerer.extraVolumes.0.name",
            "is a volume the program makes",
        )
        for name in ("dags", "tmp", "config", "logs")
    ],
    (
        "airflow.triggerer.extraVolumes=[{name: host, hostPath: {path: /var/run}}]",
        "airflow-k8s:airflow.triggerer.extraVolumes.0.hostPath",
        "not a known key",
    ),
    (
        "airflow.triggerer.extraVolumes=[{name: two, emptyDir: {}, configMap: {name: c}}]",
        "airflow-k8s:airflow.triggerer.extraVolumes.0",
        "set exactly one of configMap, secret, emptyDir",
    ),
    # Sidecars must stay within Pod Security `restricted`.
    *[
        (
            f"airflow.workers.extraContainers=[{{name: side, image: busybox:1.36, securityContext: {sc}}}]",
            f"airflow-k8s:airflow.workers.extraContainers.0.securityContext.{key}",
            why,
        )
        for sc, key, why in [
            ("{privileged: true}", "privileged", "must be false: Airflow's namespace enforces Pod Security"),
            ("{allowPrivilegeEscalation: true}", "allowPrivilegeEscalation", "must be false"),
            ("{runAsUser: 0}", "runAsUser", "greater than or equal to 1"),
            ("{runAsNonRoot: false}", "runAsNonRoot", "must be true"),
            ("{capabilities: {add: [SYS_ADMIN], drop: [ALL]}}", "capabilities.add.0", "'NET_BIND_SERVICE'"),
            ("{capabilities: {drop: [NET_RAW]}}", "capabilities.drop", "must include 'ALL'"),
            ("{seccompProfile: {type: Unconfined}}", "seccompProfile.type", "'RuntimeDefault', 'Localhost'"),
        ]
    ],
    (
        "airflow.workers.extraContainers=[{name: side, image: busybox:1.36, ports: [{containerPort: 80, hostPort: 80}]}]",
        "airflow-k8s:airflow.workers.extraContainers.0.ports.0.hostPort",
        "not a known key",
    ),
    (
        "airflow.workers.extraContainers=[{name: shipper, image: busybox:1.36}, {name: git-sync, image: x:1}]",
        "airflow-k8s:airflow.workers.extraContainers.1.name",
        "'git-sync' is already in the pod",
    ),
    (
        "airflow.scheduler.extraContainers=[{name: scheduler, image: busybox:1.36}]",
        "airflow-k8s:airflow.scheduler.extraContainers.0.name",
        "'scheduler' is already in the pod",
    ),
    (
        "airflow.workers.extraContainers=[{name: side, image: busybox:1.36, restartPolicy: Always}]",
        "airflow-k8s:airflow.workers.extraContainers.0.restartPolicy",
        "only applies to init containers",
    ),
    (
        "airflow.jobs.extraContainers=[{name: side, image: busybox:1.36, volumeMounts: [{name: logs, mountPath: /l}]}]",
        "airflow-k8s:airflow.jobs.extraContainers.0.volumeMounts.0.name",
        "'logs' is not in extraVolumes",
    ),
    (
        "airflow.workers.extraContainers=[{name: side, image: busybox:1.36, env: [{name: DB_PASSWORD, value: hunter2}]}]",
        "airflow-k8s:airflow.workers.extraContainers.0.env.0.name",
        "looks like a secret",
    ),
    ("airflow.imagePullSecrets=[Reg_Cred]", "airflow-k8s:airflow.imagePullSecrets.0", "must match"),
    ("airflow.imagePullSecrets=[a, a]", "airflow-k8s:airflow.imagePullSecrets.1", "listed twice"),
    # extraObjects: namespaced kinds in Airflow's namespace, named once, no plain-text Secret.
    *[
        (
            f"airflow.extraObjects=[{{apiVersion: {api}, kind: {kind}, metadata: {{name: x}}}}]",
            "airflow-k8s:airflow.extraObjects.0.kind",
            "is cluster-scoped",
        )
        for api, kind in [
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("v1", "Namespace"),
            ("v1", "PersistentVolume"),
            ("storage.k8s.io/v1", "StorageClass"),
            ("cert-manager.io/v1", "ClusterIssuer"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
        ]
    ],
    (
        "airflow.extraObjects=[{apiVersion: v1, kind: ConfigMap, metadata: {name: x, namespace: kube-system}}]",
        "airflow-k8s:airflow.extraObjects.0.metadata.namespace",
        "extra objects go in Airflow's namespace 'airflow'",
    ),
    (
        "airflow.extraObjects=[{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}, "
        "{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}]",
        "airflow-k8s:airflow.extraObjects.1.metadata.name",
        "declared twice",
    ),
    # A field or kind pulumi-kubernetes does not know would fail mid-registration, after the
    # resources before it were made: a half-made stack. Refused with the config instead.
    (
        "airflow.extraObjects=[{apiVersion: v1, kind: ConfigMap, metadata: {name: x}, spec: {a: b}}]",
        "airflow-k8s:airflow.extraObjects.0.spec",
        "not a field of v1 ConfigMap (allowed: binaryData, data, immutable)",
    ),
    (
        "airflow.extraObjects=[{apiVersion: apps/v1, kind: ConfigMap, metadata: {name: x}}]",
        "airflow-k8s:airflow.extraObjects.0.kind",
        "apps/v1 has no kind ConfigMap",
    ),
    (
        "airflow.extraObjects=[{apiVersion: v1, kind: ConfigMap}]",
        "airflow-k8s:airflow.extraObjects.0.metadata",
        "required",
    ),
    (
        "airflow.extraObjects=[{apiVersion: 'apps/v1 ', kind: Deployment, metadata: {name: x}}]",
        "airflow-k8s:airflow.extraObjects.0.apiVersion",
        "must match",
    ),
    (
        "airflow.extraObjects=[{apiVersion: v1, kind: Secret, metadata: {name: x}, stringData: {password: hunter2}}]",
        "airflow-k8s:airflow.extraObjects.0.stringData",
        "plain text",
    ),
    (
        "airflow.extraObjects=[{apiVersion: v1, kind: Secret, metadata: {name: x}, spec: {}}]",
        "airflow-k8s:airflow.extraObjects.0.spec",
        "is not a Secret field",
    ),
    # Issue 14: SSO's client secret only as a Pulumi secret, SSO only with FAB, known roles only (more
    # in tests/stacks/test_sso.py); Flower's user name goes into `user:password`.
    (
        "airflow.auth.sso={provider: oidc, clientId: c, clientSecret: plain-text, issuer: 'https://id.example.com'}",
        "airflow-k8s:airflow.auth.sso.clientSecret",
        "must be a Pulumi secret",
    ),
    (
        "airflow.auth={manager: simple, sso: {provider: oidc, clientId: c, clientSecret: {secure: s}, "
        "issuer: 'https://id.example.com'}}",
        "airflow-k8s:airflow.auth.sso",
        "needs manager 'fab'",
    ),
    (
        "airflow.auth.sso={provider: okta, clientId: c, clientSecret: {secure: s}, domain: example.okta.com, "
        "defaultRole: Superuser}",
        "airflow-k8s:airflow.auth.sso.defaultRole",
        "'Admin', 'Op', 'User', 'Viewer', 'Public'",
    ),
    ("airflow.flower.user=ops:team", "airflow-k8s:airflow.flower.user", "must match"),
    # Issue 15, items 3 and 4: worker sets and KEDA autoscaling.
    (
        "airflow.workerSets=[{name: gpu, queues: [gpu]}, {name: gpu, queues: [ml]}]",
        "airflow-k8s:airflow.workerSets.1.name",
        "worker set 'gpu' is declared twice",
    ),
    (
        "airflow.workerSets=[{name: gpu, queues: [gpu]}, {name: ml, queues: [ml, gpu]}]",
        "airflow-k8s:airflow.workerSets.1.queues.1",
        "queue 'gpu' is already consumed by workerSets.0",
    ),
    (
        "airflow.workerSets=[{name: dflt, queues: [default]}]",
        "airflow-k8s:airflow.workerSets.0.queues.0",
        "queue 'default' is already consumed by workers",
    ),
    ("airflow.workerSets=[{name: gpu, queues: []}]", "airflow-k8s:airflow.workerSets.0.queues", "at least 1 item"),
    ("airflow.workerSets=[{name: gpu}]", "airflow-k8s:airflow.workerSets.0.queues", "required"),
    ("airflow.workerSets=[{name: GPU, queues: [gpu]}]", "airflow-k8s:airflow.workerSets.0.name", "must match"),
    ("airflow.workerSets=[{name: 0a1b2c, queues: [x]}]", "airflow-k8s:airflow.workerSets.0.name", "suffix"),
    ('airflow.workerSets=[{name: gpu, queues: ["a b"]}]', "airflow-k8s:airflow.workerSets.0.queues.0", "must match"),
    (
        "airflow.workerSets=[{name: gpu, queues: [gpu], concurrency: 8, resources: {memoryLimit: 1Gi}}]",
        "airflow-k8s:airflow.workerSets.0.resources.memoryLimit",
        "cannot hold 8 concurrent tasks",
    ),
    (
        "airflow.workerSets=[{name: gpu, queues: [gpu], extraEnv: [{name: AIRFLOW__CELERY__WORKER_CONCURRENCY, value: '2'}]}]",
        "airflow-k8s:airflow.workerSets.0.extraEnv.0.name",
        "set by the program",
    ),
    (
        "airflow.workers.autoscaling={enabled: true, minReplicas: 4, maxReplicas: 2}",
        "airflow-k8s:airflow.workers.autoscaling.maxReplicas",
        "2 is below minReplicas (4)",
    ),
    (
        "airflow.workerSets=[{name: gpu, queues: [gpu], autoscaling: {enabled: true, maxReplicas: 0}}]",
        "airflow-k8s:airflow.workerSets.0.autoscaling.maxReplicas",
        "greater than or equal to 1",
    ),
    ("airflow.keda.source=operator", "airflow-k8s:airflow.keda.source", "'install', 'existing'"),
    ("airflow.keda.databaseCaFile=/ca.pem", "airflow-k8s:airflow.keda.databaseCaFile", "only with source: existing"),
    # Issue 15.1: Airflow's peak metadata-DB connections must fit the database (more cases, per
    # cloud, in test_connection_budget.py).
    # Over budget with pgbouncer.enabled unset turns PgBouncer on; when even its pools do not fit
    # (2 pods + 1 surging, 12 each, and the Jobs' 4 direct), the error names PgBouncer's pool.
    (
        "database.inCluster.maxConnections=30",
        "airflow-k8s:pgbouncer.defaultPoolSize",
        "Airflow through PgBouncer needs 42 metadata-DB connections at peak, the database allows 27 (15 over)",
    ),
    (
        "database.inCluster.maxConnections=10",
        "airflow-k8s:database.inCluster.maxConnections",
        "greater than or equal to 25",
    ),
    (
        "airflow.config={database.sql_alchemy_max_overflow: lots}",
        "airflow-k8s:airflow.config.database.sql_alchemy_max_overflow",
        "'lots' is not an integer",
    ),
    # Issue 15.5: housekeeping schedules as the API server parses them (robfig/cron ParseStandard,
    # no TZ in the schedule), IANA zones, a retention of at least a day, known tables.
    (
        "airflow.housekeeping.dbClean.schedule='0 3 * *'",
        "airflow-k8s:airflow.housekeeping.dbClean.schedule",
        "4 fields",
    ),
    (
        "airflow.housekeeping.dbClean.schedule='61 * * * *'",
        "airflow-k8s:airflow.housekeeping.dbClean.schedule",
        "61 is outside 0-59 in the minute field",
    ),
    (
        "airflow.housekeeping.dbClean.schedule='0 3 * * 7'",
        "airflow-k8s:airflow.housekeeping.dbClean.schedule",
        "outside 0-6 in the day of week field",
    ),
    (
        "airflow.housekeeping.dbClean.schedule='*/0 * * * *'",
        "airflow-k8s:airflow.housekeeping.dbClean.schedule",
        "must be a positive number",
    ),
    (
        "airflow.housekeeping.dbClean.schedule='0 5-3 * * *'",
        "airflow-k8s:airflow.housekeeping.dbClean.schedule",
        "runs backwards",
    ),
    (
        "airflow.housekeeping.dbClean.schedule='CRON_TZ=Europe/Paris 0 3 * * *'",
        "airflow-k8s:airflow.housekeeping.dbClean.schedule",
        "set timeZone",
    ),
    (
        "airflow.housekeeping.dbClean.schedule='@fortnightly'",
        "airflow-k8s:airflow.housekeeping.dbClean.schedule",
        "@daily",
    ),
    (
        "airflow.housekeeping.dbClean.schedule='@every 1d'",
        "airflow-k8s:airflow.housekeeping.dbClean.schedule",
        "@every",
    ),
    ("airflow.housekeeping.dbClean.timeZone=Local", "airflow-k8s:airflow.housekeeping.dbClean.timeZone", "IANA"),
    (
        "airflow.housekeeping.podCleanup.timeZone=Europe/Pariss",
        "airflow-k8s:airflow.housekeeping.podCleanup.timeZone",
        "IANA time zone",
    ),
    (
        "airflow.housekeeping.dbClean.retentionDays=0",
        "airflow-k8s:airflow.housekeeping.dbClean.retentionDays",
        "greater than or equal to 1",
    ),
    (
        "airflow.housekeeping.dbClean.tables=[dag_run, dag_runs]",
        "airflow-k8s:airflow.housekeeping.dbClean.tables.1",
        "'dag_runs' is not a table `airflow db clean` knows",
    ),
    (
        "airflow.housekeeping.podCleanup.minPendingMinutes=4",
        "airflow-k8s:airflow.housekeeping.podCleanup.minPendingMinutes",
        "greater than or equal to 5",
    ),
    (
        "airflow={executor: CeleryExecutor, podOperator: {enabled: false}, housekeeping: {podCleanup: {enabled: true}}}",
        "airflow-k8s:airflow.housekeeping.podCleanup.enabled",
        "needs the KubernetesExecutor or airflow.podOperator.enabled",
    ),
    ("airflow.housekeeping.dbClean.keepDays=3", "airflow-k8s:airflow.housekeeping.dbClean.keepDays", "not a known key"),
    # Issue 15, item 7: metrics.
    (
        "airflow.statsd={serviceMonitor: {enabled: true}}",
        "airflow-k8s:airflow.statsd.serviceMonitor.enabled",
        "needs airflow.statsd.enabled: true",
    ),
    (
        "airflow.statsd={enabled: true, serviceMonitor: {enabled: true, interval: 30sec}}",
        "airflow-k8s:airflow.statsd.serviceMonitor.interval",
        "must match",
    ),
    (
        "airflow.statsd={enabled: true, serviceMonitor: {enabled: true, interval: ''}}",
        "airflow-k8s:airflow.statsd.serviceMonitor.interval",
        "at least 1 character",
    ),
    (
        "airflow.statsd={enabled: true, serviceMonitor: {enabled: true, labels: {'release!': x}}}",
        "airflow-k8s:airflow.statsd.serviceMonitor.labels.release!.[key]",
        "not a Kubernetes qualified name",
    ),
    ("airflow.statsd={enabled: true, unmapped: ignore}", "airflow-k8s:airflow.statsd.unmapped", "'drop', 'keep'"),
    (
        "airflow.config={metrics.legacy_names_on: 'True'}",
        "airflow-k8s:airflow.config",
        "'metrics.legacy_names_on' is set by the program (airflow.statsd)",
    ),
    (
        "airflow.statsd={enabled: true, scrapers: {podLabels: {app: prometheus}}}",
        "airflow-k8s:airflow.statsd.scrapers.namespaceLabels",
        "is required",
    ),
    (
        "airflow.statsd={enabled: true, scrapers: {namespaceLabels: {}}}",
        "airflow-k8s:airflow.statsd.scrapers.namespaceLabels",
        "at least 1 item",
    ),
]

# Autoscaling and worker sets need Celery (two overrides: the case table takes one).
KEDA_CASES = [
    (
        ["airflow.executor=KubernetesExecutor", "airflow.workers.autoscaling={enabled: true}"],
        "airflow-k8s:airflow.workers.autoscaling.enabled",
        "needs the CeleryExecutor",
    ),
    (
        ["airflow.executor=KubernetesExecutor", "airflow.workerSets=[{name: gpu, queues: [gpu]}]"],
        "airflow-k8s:airflow.workerSets",
        "needs the CeleryExecutor",
    ),
    (
        ["database.mode=external", "database.external={host: db.example.com, password: p, sslmode: verify-full, "
         "ca: {configMap: db-ca}}", "airflow.workers.autoscaling={enabled: true}"],
        "airflow-k8s:database.external.ca",
        "give the CA as pem",
    ),
]  # fmt: skip


@pytest.mark.parametrize("overrides,key,fragment", KEDA_CASES)
def test_bad_autoscaling_input_names_key_and_registers_nothing(overrides: list[str], key: str, fragment: str) -> None:
    config, secret_keys = load_stack_config("local", overrides)
    run = engine.run(program, config=config, secret_keys=secret_keys, stack="local")
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), run.error
    assert run.resources == []


def test_existing_keda_with_a_shipped_ca_needs_its_path() -> None:
    over = [
        "airflow.workerSets=[{name: gpu, queues: [gpu], autoscaling: {enabled: true}}]",
        "airflow.keda.source=existing",
    ]
    config, secret_keys = load_stack_config("aws-dev", over)
    run = engine.run(program, config=config, secret_keys=secret_keys, stack="aws-dev")
    assert run.error is not None and "airflow-k8s:airflow.keda.databaseCaFile:" in str(run.error), run.error
    assert run.resources == []


@pytest.mark.parametrize("override,key,fragment", [c for c in CASES if c[1]])
def test_bad_input_names_key_and_registers_nothing(override: str, key: str, fragment: str) -> None:
    config, secret_keys = load_stack_config("local", [override])
    run = engine.run(program, config=config, secret_keys=secret_keys, stack="local")
    assert run.error is not None, f"{override} was accepted"
    message = str(run.error)
    assert key + ":" in message, message
    assert fragment in message, message
    assert "Traceback" not in message
    assert run.resources == [], f"{override} registered {[r.name for r in run.resources]}"


def test_flower_needs_celery() -> None:
    config, keys = load_stack_config("local", ["airflow.executor=KubernetesExecutor", "airflow.flower.enabled=true"])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert "airflow-k8s:airflow.flower.enabled: needs the CeleryExecutor" in str(run.error)
    assert run.resources == []


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        (
            "airflow.config={metrics.statsd_datadog_enabled: 'True'}",
            "airflow-k8s:airflow.config",
            "'metrics.statsd_datadog_enabled' is set by the program with statsd on",
        ),
        (
            "airflow.scheduler.extraEnv=[{name: AIRFLOW__METRICS__STATSD_DATADOG_ENABLED, value: 'True'}]",
            "airflow-k8s:airflow.scheduler.extraEnv.0.name",
            "AIRFLOW__METRICS__STATSD_DATADOG_ENABLED is already set by airflow.statsd",
        ),
    ],
)
def test_with_statsd_on_datadog_is_the_programs_choice(override: str, key: str, fragment: str) -> None:
    config, keys = load_stack_config("local", ["airflow.statsd.enabled=true", override])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert f"{key}: {fragment}" in str(run.error), run.error
    assert run.resources == []
    # Without the exporter it is the user's to set.
    config, keys = load_stack_config("local", [override])
    assert engine.run(program, config=config, secret_keys=keys, stack="local").error is None


def test_valid_control_case_renders() -> None:
    config, keys = load_stack_config("local", ["airflow.executor=KubernetesExecutor"])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None and run.resources


def test_secret_value_not_echoed_in_error() -> None:
    config, keys = load_stack_config(
        "local", ["database.mode=external", "database.external={host: h, port: 99999, password: Sup3rS3cret!}"]
    )
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert "airflow-k8s:database.external.port" in str(run.error)
    assert "Sup3rS3cret" not in str(run.error)


def test_cli_prints_error_and_exits_2(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert render_main(["local", "--out", str(tmp_path), "--set", "airflow.executor=Nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid stack config:") and "airflow-k8s:airflow.executor" in err
    assert not (tmp_path / "resources.json").exists()


def test_cli_rejects_malformed_set() -> None:
    with pytest.raises(RenderError, match="expected KEY=VALUE"):
        load_stack_config("local", ["airflow.executor"])


def test_unknown_stack_file() -> None:
    with pytest.raises(RenderError, match="no stack file Pulumi.nope.yaml"):
        load_stack_config("nope")


def test_other_namespaces_unrelated_to_the_project_are_left_alone() -> None:
    config, keys = load_stack_config("local", ["pulumi:tags={team: data}", "observability:endpoint=x"])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None and run.resources


MALFORMED = [
    # (stack file text, fragment of the message); each names the file and, where YAML has one, the line.
    ("- config\n- x\n", "stacks/Pulumi.bad.yaml: a stack file is a mapping with a 'config:' key, not a list"),
    ("just text\n", "not a string"),
    ("config: airflow-k8s:cloud=local\n", "stacks/Pulumi.bad.yaml: 'config:' must be a mapping"),
    ("config:\n  airflow-k8s:cloud: [local\n", "stacks/Pulumi.bad.yaml, line 3: not valid YAML"),
    (
        "config:\n  airflow-k8s:cloud: local\n  airflow-k8s:cloud: aws\n",
        "stacks/Pulumi.bad.yaml, line 3: not valid YAML: duplicate key 'airflow-k8s:cloud' (first given on line 2)",
    ),
    (
        "config:\n  airflow-k8s:airflow:\n    executor: CeleryExecutor\n    executor: KubernetesExecutor\n",
        "line 4: not valid YAML: duplicate key 'executor' (first given on line 3)",
    ),
]


@pytest.mark.parametrize("text,fragment", MALFORMED)
def test_a_malformed_stack_file_is_exit_2_naming_file_and_line(
    text: str, fragment: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stacks.tooling import render as render_module

    (tmp_path / "Pulumi.bad.yaml").write_text(text)
    monkeypatch.setattr(render_module, "STACKS_DIR", tmp_path)
    assert render_main(["bad"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("airflow.config={core.parallelism: [}", "--set airflow-k8s:airflow.config, line 1: not valid YAML"),
        ("airflow.variables={a: 1, a: 2}", "--set airflow-k8s:airflow.variables, line 1: not valid YAML: duplicate"),
    ],
)
def test_a_set_value_that_is_not_yaml_is_exit_2_naming_the_key(
    override: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert render_main(["local", "--set", override]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "host", ["db.internal", "10.0.0.5", "::1", "[::1]", "pg_primary.svc.cluster.local", "DB.Example.COM."]
)
def test_host_names_and_addresses_are_accepted(host: str) -> None:
    config, keys = load_stack_config(
        "local", [f"database={{mode: external, external: {{host: '{host}', password: p}}}}"]
    )
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None, run.error


def test_the_printed_ui_command_quotes_what_came_from_config() -> None:
    import shlex

    context, kubeconfig = "team; rm -rf ~ | x", "/home/a b/.kube/config"
    config, keys = load_stack_config("local", [f"kubernetes.context={context}", f"kubernetes.kubeconfig={kubeconfig}"])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None, run.error
    command = shlex.split(run.outputs["uiAccess"])
    assert command[:5] == ["kubectl", "--kubeconfig", kubeconfig, "--context", context]


def test_ordinary_airflow_settings_still_pass_through() -> None:
    config, keys = load_stack_config(
        "local",
        [
            "airflow.config={core.parallelism: '64', logging.secret_mask_adapter: '', scheduler.task_instance_heartbeat_timeout: '20'}"
        ],
    )
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None, run.error


@pytest.mark.parametrize(
    "override",
    [
        "airflow.image.repository=registry.example.com:5000/team/airflow",
        "airflow.image.repository=localhost/airflow",
        "airflow.dags.folder=/opt/airflow/dags/repo",
        "airflow.workers.resources={cpuRequest: 500m, cpuLimit: '1', memoryRequest: 2Gi, memoryLimit: 2Gi}",
        "kubernetes.dagVolumeSize=1e9",
        # Issue 14: beside the generated paths (not over them), secrets by reference, native sidecars.
        "airflow.workers={extraVolumes: [{name: v, emptyDir: {}}], extraVolumeMounts: [{name: v, mountPath: "
        "/opt/airflow/plugins}]}",
        "airflow.workers.extraEnv=[{name: AIRFLOW__CORE__PARALLELISM, value: '64'}, {name: AIRFLOW_CONN_DW, "
        "valueFrom: {secretKeyRef: {name: dw, key: uri}}}, {name: AIRFLOW__SMTP__SMTP_PASSWORD, valueFrom: "
        "{secretKeyRef: {name: smtp, key: password}}}]",
        "airflow.placement.tolerations=[{operator: Exists}]",
        "airflow.extraObjects=[{apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: r}, rules: "
        "[{apiGroups: [''], resources: [configmaps], verbs: [get]}]}]",
    ],
)
def test_valid_values_of_the_validated_kinds_pass(override: str) -> None:
    config, keys = load_stack_config("local", [override])
    run = engine.run(program, config=config, secret_keys=keys, stack="local")
    assert run.error is None, run.error


CLOUD_CASES = [
    # Issue 13, keys named wrongly: an unparsable CIDR named only the top-level key ('airflow-k8s:azure').
    ("azure-dev", "azure.cluster.serviceCidr=foo", "airflow-k8s:azure.cluster.serviceCidr", "not an IPv4 CIDR"),
    ("aws-dev", "aws.cluster.serviceCidr=10.0.0.0/33", "airflow-k8s:aws.cluster.serviceCidr", "not an IPv4 CIDR"),
    ("azure-dev", "azure.network.addressSpace=x", "airflow-k8s:azure.network.addressSpace", "not an IPv4 CIDR"),
    ("azure-dev", "azure.network.aksSubnet=10.50.0.1/18", "airflow-k8s:azure.network.aksSubnet", "host bits"),
    ("aws-dev", "aws.network.cidr=fd00::/48", "airflow-k8s:aws.network.cidr", "not an IPv4 CIDR"),
    # Issue 13, values that only fail at deploy time: a region that does not exist, a storage ceiling
    # RDS refuses.
    ("aws-dev", "aws.region=eu-west-9", "airflow-k8s:aws.region", "not an AWS region"),
    ("azure-dev", "azure.region=westeurope2", "airflow-k8s:azure.region", "not a known Azure region"),
    (
        "aws-dev",
        "aws.database={allocatedStorageGib: 100, maxAllocatedStorageGib: 50}",
        "airflow-k8s:aws.database.maxAllocatedStorageGib",
        "must be above allocatedStorageGib",
    ),
    # Issue 14: the UI on Azure needs its Key Vault certificate, versionless, and registries are ARM ids.
    ("azure-dev", "ui.host=airflow.example.com", "airflow-k8s:azure.ui.certificateUri", "HTTPS only"),
    (
        "azure-dev",
        "azure.ui.certificateUri=https://kv1.vault.azure.net/certificates/ui/0123456789abcdef0123456789abcdef",
        "airflow-k8s:azure.ui.certificateUri",
        "drop the version",
    ),
    (
        "azure-dev",
        "azure.cluster.acrIds=[myregistry.azurecr.io]",
        "airflow-k8s:azure.cluster.acrIds",
        "not container registry ids",
    ),
]


@pytest.mark.parametrize("stack,override,key,fragment", CLOUD_CASES)
def test_bad_cloud_input_names_the_full_key(stack: str, override: str, key: str, fragment: str) -> None:
    config, secret_keys = load_stack_config(stack, [override])
    run = engine.run(program, config=config, secret_keys=secret_keys, stack=stack)
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []


UNUSED = [
    # (stack, overrides, the keys the warning names, why) - issue 13: tuning a piece that is not deployed.
    (
        "local",
        ("airflow.executor=KubernetesExecutor", "airflow.workers.replicas=3"),
        "airflow-k8s:airflow.workers.replicas",
        "no Celery workers run under executor 'KubernetesExecutor'",
    ),
    (
        "local",
        ("database={mode: external, external: {host: db, password: p}, inCluster: {storageSize: 20Gi}}",),
        "airflow-k8s:database.inCluster.storageSize",
        "database.mode is 'external'",
    ),
    ("aws-dev", ("kubernetes.dagVolumeSize=5Gi",), "airflow-k8s:kubernetes.dagVolumeSize", "provides the DAG volume"),
    (
        "local",
        ("airflow.dags={source: image}", "kubernetes.dagVolumeSize=5Gi"),
        "airflow-k8s:kubernetes.dagVolumeSize",
        "creates no DAG claim",
    ),
    ("local", ("kubernetes.logRetentionDays=3",), "airflow-k8s:kubernetes.logRetentionDays", "no task-log claim"),
    (
        "local",
        ("airflow.executor=KubernetesExecutor", "broker={mode: external, external: {host: redis.example.com}}"),
        "airflow-k8s:broker.external",
        "executor 'KubernetesExecutor' uses no broker",
    ),
    # Issue 14: pod options of pods the stack does not run.
    (
        "local",
        ("airflow.taskPods.placement={nodeSelector: {a: b}}",),
        "airflow-k8s:airflow.taskPods.placement",
        "no KubernetesExecutor task pods run under executor 'CeleryExecutor'",
    ),
    (
        "local",
        ("airflow.flower.extraEnv=[{name: A, value: b}]",),
        "airflow-k8s:airflow.flower.extraEnv",
        "Flower is not enabled",
    ),
    (
        "local",
        ("airflow.podOperator={enabled: false, placement: {nodeSelector: {a: b}}}",),
        "airflow-k8s:airflow.podOperator.placement",
        "airflow.podOperator.enabled is false",
    ),
    (
        "local",
        ("airflow.executor=KubernetesExecutor", "airflow.workers.placement={nodeSelector: {a: b}}"),
        "airflow-k8s:airflow.workers.placement",
        "no Celery workers run",
    ),
    (
        "local",
        ("airflow.statsd.scrapers={namespaceLabels: {kubernetes.io/metadata.name: monitoring}}",),
        "airflow-k8s:airflow.statsd.scrapers",
        "airflow.statsd.enabled is false",
    ),
]


@pytest.mark.parametrize("stack,overrides,key,why", UNUSED)
def test_a_setting_that_tunes_an_absent_piece_is_a_warning(
    stack: str, overrides: tuple[str, ...], key: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, keys = load_stack_config(stack, list(overrides))
    run = engine.run(program, config=config, secret_keys=keys, stack=stack)
    assert run.error is None and run.resources, run.error
    assert any(key in w and why in w for w in run.warnings), run.warnings
    args = [stack]
    for o in overrides:
        args += ["--set", o]
    assert render_main([*args, "--critical-path"]) == 0  # the render shows it as `pulumi preview` would
    assert f"warning: {key}" in capsys.readouterr().err


@pytest.mark.parametrize("stack", ["local", "aws-dev", "aws-prod", "azure-dev", "azure-prod"])
def test_the_stack_files_use_every_setting_they_give(stack: str) -> None:
    config, keys = load_stack_config(stack)
    run = engine.run(program, config=config, secret_keys=keys, stack=stack)
    assert run.error is None and run.warnings == []


@pytest.mark.parametrize(
    "stack,override,key",
    [
        ("aws-dev", "aws.cluster.existingName=a;b", "airflow-k8s:aws.cluster.existingName"),
        ("azure-dev", "azure.cluster.existingName=aks|x", "airflow-k8s:azure.cluster.existingName"),
        ("azure-dev", "azure.cluster.existingResourceGroup=rg$(id)", "airflow-k8s:azure.cluster.existingResourceGroup"),
    ],
)
def test_existing_cluster_names_follow_the_clouds_rules(stack: str, override: str, key: str) -> None:
    config, keys = load_stack_config(stack, [override])
    run = engine.run(program, config=config, secret_keys=keys, stack=stack)
    assert run.error is not None and key + ": must match" in str(run.error), str(run.error)


def test_the_azure_ui_command_quotes_a_resource_group_with_parentheses() -> None:
    import shlex

    from tests.stacks.test_azure import EXISTING

    overrides = [o for o in EXISTING if "existingResourceGroup" not in o] + [
        "azure.cluster.existingResourceGroup=team(rg)"
    ]
    config, keys = load_stack_config("azure-dev", overrides)
    run = engine.run(program, config=config, secret_keys=keys, stack="azure-dev")
    assert run.error is None, run.error
    words = shlex.split(run.revealed_outputs["uiAccess"])
    assert words[:7] == ["az", "aks", "get-credentials", "--resource-group", "team(rg)", "--name", "team-aks"]
