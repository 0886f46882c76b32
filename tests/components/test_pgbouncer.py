"""Issue 15.2: PgBouncer as its own component, between the database and Airflow's long-running
components; the migration and user Jobs go to the server directly."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote

import pytest

from components.pgbouncer import CLIENT_USER, STATS_USER, scram_verifier
from tests.render import component, containers, env_of, named, objects, pod_spec, render, workloads

ON = ("pgbouncer.enabled=true",)
LONG_RUNNING = ("api-server", "scheduler", "dag-processor", "triggerer", "worker")
# A CA the aws stack ships (the RDS roots) makes the server login verify-full.
STACKS = ("local", "aws-dev", "azure-dev")


def exact(run, kind: str, name: str) -> dict:  # noqa: ANN001
    """The one object of that kind and name (`named` also matches `<name>-...` ConfigMaps)."""
    (hit,) = [o for o in objects(run, kind, reveal=True) if o["metadata"]["name"] == name]
    return hit


def ini_text(run) -> str:  # noqa: ANN001
    return exact(run, "ConfigMap", "airflow-pgbouncer")["data"]["pgbouncer.ini"]


def ini(run) -> dict[str, str]:  # noqa: ANN001
    text = ini_text(run)
    return dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)


def userlist(run) -> dict[str, str]:  # noqa: ANN001
    text = named(run, "Secret", "airflow-pgbouncer", reveal=True)["stringData"]["userlist.txt"]
    return {m.group(1): m.group(2) for m in re.finditer(r'^"([^"]*)" "((?:[^"]|"")*)"$', text, re.M)}


def airflow_secret(run) -> dict[str, str]:  # noqa: ANN001
    return named(run, "Secret", "airflow-secrets", reveal=True)["stringData"]


def test_scram_verifier_is_postgresqls() -> None:
    """A verifier PostgreSQL 15.18 (Debian bookworm) computed (`SET password_encryption = 'scram-sha-256'; CREATE ROLE r
    PASSWORD 'pencil'`, read back from pg_authid): the same password and salt give the same secret.
    tests/e2e/test_pgbouncer_e2e.py also logs in to a real server with one the program made."""
    known = (
        "SCRAM-SHA-256$4096:5P46Ncd+C6jJv1bawZYIOA==$f0aFqirIW0tC/dtH9AeGg52ss+XnjsLL3zExIy7GdEQ=:"
        "LZ52Bl2nXMEdmH1Af5d8LSLOEULgTu85BXsqnCDuRwY="
    )
    salt = base64.b64decode("5P46Ncd+C6jJv1bawZYIOA==")
    assert scram_verifier("pencil", salt) == known
    assert scram_verifier("pencil!", salt) != known


def test_off_by_default_and_nothing_changes() -> None:
    run = render("local")
    assert not [o for o in objects(run) if component(o) == "pgbouncer"]
    assert "sql-alchemy-conn-direct" not in airflow_secret(run)


@pytest.mark.parametrize("stack", STACKS)
def test_long_running_components_use_pgbouncer_and_the_jobs_the_server(stack: str) -> None:
    # The pools Job and the db-clean CronJob too: the budget counts every Job as a direct client.
    run = render(stack, *ON, "airflow.pools={etl: {slots: 2}}", "airflow.housekeeping.dbClean.enabled=true")
    secret = airflow_secret(run)
    for key in ("sql-alchemy-conn", "sql-alchemy-conn-async", "result-backend"):
        assert f"{CLIENT_USER}:" in secret[key] and "airflow-pgbouncer.airflow.svc.cluster.local:6432/" in secret[key]
        assert "sslrootcert" not in secret[key]
    direct = secret["sql-alchemy-conn-direct"]
    assert "pgbouncer" not in direct and CLIENT_USER not in direct
    assert direct == airflow_secret(render(stack))["sql-alchemy-conn"]  # the URL the Jobs had without it
    jobs = set()
    for obj in workloads(run):
        for c in containers(pod_spec(obj)):
            env = env_of(c)
            conn = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
            if conn is None:
                continue
            job = obj["kind"] in ("Job", "CronJob")
            jobs |= {component(obj)} if job else set()
            want = "sql-alchemy-conn-direct" if job else "sql-alchemy-conn"
            assert conn == ("secret", "airflow-secrets", want), (obj["metadata"]["name"], c["name"])
    assert {"migrate", "pools", "db-clean"} <= jobs, jobs


@pytest.mark.parametrize("stack", STACKS)
def test_pgbouncer_logs_in_to_the_server_as_the_direct_urls_do(stack: str) -> None:
    """Transaction pooling; the server's TLS mode and CA, as the direct URL names them; the forced
    server user, whose password only the auth file holds."""
    run = render(stack, *ON)
    conf = ini(run)
    direct = airflow_secret(run)["sql-alchemy-conn-direct"]
    sslmode = re.search(r"sslmode=([a-z-]+)", direct).group(1)  # type: ignore[union-attr]
    assert conf["pool_mode"] == "transaction" and conf["auth_type"] == "scram-sha-256"
    assert conf["server_tls_sslmode"] == sslmode
    if sslmode == "verify-full":
        pod = pod_spec(named(run, "Deployment", "airflow-pgbouncer", reveal=True))
        ca = next((v for v in pod["volumes"] if v["name"] == "db-ca"), None)
        if ca is None:  # a public CA: the image's trust store, as the direct URL names it
            assert conf["server_tls_ca_file"] == unquote(re.search(r"sslrootcert=([^&]+)", direct).group(1))  # type: ignore[union-attr]
        else:  # the stack's CA bundle, mounted where the ini says
            assert conf["server_tls_ca_file"] == "/etc/pgbouncer/ca/ca.crt"
            source = ca.get("configMap", {}).get("name") or ca["secret"]["secretName"]
            kind = "ConfigMap" if "configMap" in ca else "Secret"
            assert "BEGIN CERTIFICATE" in str(exact(run, kind, source).get("data"))
    else:
        assert "server_tls_ca_file" not in conf
    user = re.search(r"://([^:]+):", direct).group(1)  # type: ignore[union-attr]
    password = re.search(r"://[^:]+:([^@]+)@", direct).group(1)  # type: ignore[union-attr]
    assert conf["airflow"].endswith(f" user={user}") and "password" not in conf["airflow"]
    users = userlist(run)
    assert users[user] == unquote(password)
    assert unquote(password) not in ini_text(run)


def test_clients_log_in_with_a_scram_verifier_never_the_password() -> None:
    run = render("local", *ON)
    users = userlist(run)
    client_pw = unquote(re.search(rf"{CLIENT_USER}:([^@]+)@", airflow_secret(run)["sql-alchemy-conn"]).group(1))  # type: ignore[union-attr]
    verifier = users[CLIENT_USER]
    salt = base64.b64decode(verifier.split("$")[1].split(":")[1])
    assert verifier == scram_verifier(client_pw, salt)
    assert client_pw not in named(run, "Secret", "airflow-pgbouncer", reveal=True)["stringData"]["userlist.txt"]
    stats_url = named(run, "Secret", "airflow-pgbouncer", reveal=True)["stringData"]["stats-url"]
    stats_pw = unquote(re.search(rf"{STATS_USER}:([^@]+)@", stats_url).group(1))  # type: ignore[union-attr]
    assert users[STATS_USER] == scram_verifier(
        stats_pw, base64.b64decode(users[STATS_USER].split("$")[1].split(":")[1])
    )
    assert ini(run)["stats_users"] == STATS_USER


def test_the_secret_is_mounted_into_pgbouncer_only() -> None:
    run = render("local", *ON, "airflow.executor=CeleryExecutor,KubernetesExecutor", "airflow.flower.enabled=true")
    readers = set()
    for obj in workloads(run):
        spec = pod_spec(obj)
        vols = {v.get("secret", {}).get("secretName") for v in spec.get("volumes", [])}
        refs = {v[1] for c in containers(spec) for v in env_of(c).values() if isinstance(v, tuple)}
        if "airflow-pgbouncer" in vols | refs:
            readers.add(obj["metadata"]["name"])
    assert readers == {"airflow-pgbouncer"}
    pod = pod_spec(named(run, "Deployment", "airflow-pgbouncer"))
    by_name = {c["name"]: c for c in pod["containers"]}
    # The auth file to PgBouncer, the stats URL to the exporter: each container its own.
    assert {m["name"] for m in by_name["pgbouncer"]["volumeMounts"]} >= {"users"}
    assert "env" not in by_name["pgbouncer"]
    assert "volumeMounts" not in by_name["exporter"]
    assert env_of(by_name["exporter"])["DATABASE_URL"] == ("secret", "airflow-pgbouncer", "stats-url")


def test_replicas_spread_roll_one_at_a_time_and_have_a_disruption_budget() -> None:
    run = render("local", *ON)
    dep = named(run, "Deployment", "airflow-pgbouncer")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert {t["topologyKey"] for t in pod_spec(dep)["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert named(run, "PodDisruptionBudget", "airflow-pgbouncer")["spec"]["maxUnavailable"] == 1
    one = render("local", *ON, "pgbouncer.replicas=1")
    assert not [o for o in objects(one, "PodDisruptionBudget") if o["metadata"]["name"] == "airflow-pgbouncer"]


def test_stopping_pod_drains_then_shuts_down_safely() -> None:
    """SIGINT (safe shutdown: transactions in flight finish) after the endpoint drain, and the
    preStop hook outlasts PgBouncer, so the kubelet's SIGTERM never meets a running shutdown."""
    pod = pod_spec(named(run := render("local", *ON), "Deployment", "airflow-pgbouncer"))
    main = next(c for c in pod["containers"] if c["name"] == "pgbouncer")
    script = main["lifecycle"]["preStop"]["exec"]["command"][-1]
    drain = int(re.search(r"sleep (\d+); kill -INT 1;", script).group(1))  # type: ignore[union-attr]
    assert "while kill -0 1" in script
    assert drain < pod["terminationGracePeriodSeconds"] - 30
    assert "max_db_connections" in ini(run)


def test_metrics_port_and_labels_for_a_monitor() -> None:
    """What a ServiceMonitor/PodMonitor selects: `app.kubernetes.io/component: pgbouncer` and a
    port named `metrics`, on the pods and on the Service; the NetworkPolicy lets scrapes in."""
    run = render("local", *ON)
    svc = named(run, "Service", "airflow-pgbouncer")
    assert svc["metadata"]["labels"]["app.kubernetes.io/component"] == "pgbouncer"
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"pgbouncer": 6432, "metrics": 9127}
    pod = named(run, "Deployment", "airflow-pgbouncer")["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "pgbouncer"
    ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", [])]
    assert {"name": "metrics", "containerPort": 9127, "protocol": "TCP"} in ports
    policy = named(run, "NetworkPolicy", "airflow-pgbouncer")["spec"]
    from_instance, scrape = policy["ingress"]
    assert from_instance["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "airflow"}}}]
    assert from_instance["ports"] == [{"port": 6432, "protocol": "TCP"}]
    assert scrape == {"ports": [{"port": 9127, "protocol": "TCP"}]}


def test_tuning_pgbouncer_touches_only_pgbouncer() -> None:
    """A pool size is PgBouncer's alone: the database, the Jobs (a changed Job is replaced) and the
    Airflow workloads stay as they are; PgBouncer's pods roll (the config checksum)."""

    def by_key(run) -> dict:  # noqa: ANN001
        meta = "metadata"
        return {(o["kind"], o[meta].get("namespace", ""), o[meta]["name"]): o for o in objects(run, reveal=True)}

    base = by_key(render("local", *ON))
    tuned = by_key(render("local", *ON, "pgbouncer.defaultPoolSize=20", "pgbouncer.maxClientConn=2000"))
    changed = sorted(k for k in base if base[k] != tuned.get(k))
    assert changed == [("ConfigMap", "airflow", "airflow-pgbouncer"), ("Deployment", "airflow", "airflow-pgbouncer")]
    # Pools the in-cluster server's default cannot hold raise its max_connections (a restart of the
    # database), as Airflow's own peak does without PgBouncer: (2 + 1 surging) x (30 + 2) + Jobs > 97.
    big = by_key(render("local", *ON, "pgbouncer.defaultPoolSize=30"))
    assert (
        base[("StatefulSet", "airflow", "airflow-postgresql")] != big[("StatefulSet", "airflow", "airflow-postgresql")]
    )


def test_turning_it_on_never_touches_the_database() -> None:
    off = render("local")
    on = render("local", *ON)
    for kind, name in (("StatefulSet", "airflow-postgresql"), ("Secret", "airflow-postgresql"),
                       ("Service", "airflow-postgresql")):  # fmt: skip
        assert named(off, kind, name, reveal=True) == named(on, kind, name, reveal=True)
    aws_off, aws_on = render("aws-dev"), render("aws-dev", *ON)
    rds = [r for r in aws_off.resources if r.type == "aws:rds/instance:Instance"]
    assert rds and [r.inputs for r in rds] == [r.inputs for r in aws_on.resources if r.type == rds[0].type]


def test_components_wait_for_pgbouncer_and_the_jobs_do_not() -> None:
    run = render("local", *ON)
    dep = run.get("kubernetes:apps/v1:Deployment", "pgbouncer-deployment")
    for r in run.kubernetes():
        comp = r.inputs.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")
        if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet") and comp in LONG_RUNNING:
            assert dep.urn in r.dependencies, r.name
        if r.type == "kubernetes:batch/v1:Job":
            assert dep.urn not in r.dependencies, r.name
    # PgBouncer needs only its own objects: it starts while the database is still being made.
    pg = run.get("kubernetes:apps/v1:StatefulSet", "postgres-statefulset")
    assert pg.urn not in dep.dependencies


def test_pod_security_restricted_and_no_token() -> None:
    from tests.pod_security import violations

    dep = named(render("local", *ON), "Deployment", "airflow-pgbouncer")
    assert violations({"metadata": dep["spec"]["template"]["metadata"], "spec": pod_spec(dep)}, "restricted") == []
    pod = pod_spec(dep)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65534
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert (
            sc["readOnlyRootFilesystem"]
            and not sc["allowPrivilegeEscalation"]
            and sc["capabilities"] == {"drop": ["ALL"]}
        )
        assert re.fullmatch(r"apache/airflow:airflow-pgbouncer(-exporter)?-\d{4}\.\d\d\.\d\d-\d+\.\d+\.\d+", c["image"])


def test_airflow_pods_reach_pgbouncer_and_only_it_and_the_jobs_reach_the_server() -> None:
    """The in-cluster server's NetworkPolicy: Airflow pods -> PgBouncer -> database; the Jobs, which
    bypass PgBouncer, are the only other clients. Without PgBouncer it admits the whole instance."""
    on = named(render("local", *ON), "NetworkPolicy", "airflow-postgresql")["spec"]["ingress"][0]["from"][0]
    assert on["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": "airflow"}
    assert on["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["create-user", "migrate", "pgbouncer"]}
    ]
    off = named(render("local"), "NetworkPolicy", "airflow-postgresql")["spec"]["ingress"][0]["from"][0]
    assert off == {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "airflow"}}}
    # Every pod that holds the server's URL or runs PgBouncer is one of those the policy admits.
    run = render("local", *ON)
    direct = {component(o) for o in workloads(run) for c in containers(pod_spec(o))
              if ("secret", "airflow-secrets", "sql-alchemy-conn-direct") in env_of(c).values()}  # fmt: skip
    assert direct | {"pgbouncer"} == set(on["podSelector"]["matchExpressions"][0]["values"])


def test_keda_queries_the_server_itself_not_pgbouncer() -> None:
    """KEDA's operator lives in its own namespace, which PgBouncer's NetworkPolicy does not admit, and
    the budget counts its pool among the direct clients: its connection string names the server."""
    run = render("local", *ON, "airflow.workers.autoscaling={enabled: true}")
    secret = named(run, "Secret", "airflow-keda-db", reveal=True)
    (value,) = [*(secret.get("stringData") or {}).values(), *(
        base64.b64decode(v).decode() for v in (secret.get("data") or {}).values()
    )]  # fmt: skip
    assert "host=airflow-postgresql." in value and "pgbouncer" not in value, value
