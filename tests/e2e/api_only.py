"""The rendered api-server alone (and whichever other components a test names), booted like
test_airflow_e2e's Deployment: PostgreSQL on loopback, the migration and admin Jobs, then the
long-running processes. For tests about what people reach over HTTP (the proxy, SSO, Flower)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.render import load_stack_config
from tests.e2e.harness import AIRFLOW_VENV, E2E, Api, Cluster, Process, airflow_containers, wait_port
from tests.e2e.test_airflow_e2e import TIMINGS, Deployment, _render_objects

AIRFLOW_KEY = "airflow-k8s:airflow"


class Front(Deployment):
    """A Deployment that runs only the components a test asks for."""

    def __init__(
        self, base: Path, overrides: tuple[str, ...] = (), redis: bool = False, secrets: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(base, overrides)
        self._with_redis = redis
        self._secrets = dict(secrets or {})

    def render(self) -> list[dict[str, Any]]:
        """The render, with `secrets` (a path under `airflow-k8s:airflow` -> value) passed the way the
        Pulumi CLI passes a `--secret --path` value: decrypted, its top-level key marked secret."""
        if not self._secrets:
            return _render_objects(self.overrides())
        config, keys = load_stack_config("local", list(self.overrides()))
        raw = json.loads(config[AIRFLOW_KEY])
        for path, value in self._secrets.items():
            *parents, leaf = path.split(".")
            node = raw
            for p in parents:
                node = node[p]
            node[leaf] = value
        config[AIRFLOW_KEY] = json.dumps(raw)
        run = engine.run(program, config=config, secret_keys=[*keys, AIRFLOW_KEY], stack="local")
        assert run.error is None, run.error
        return [r.manifest(reveal=True) for r in run.kubernetes()]

    def start_servers(self) -> None:
        self.pg.start()
        self.pg.create_airflow_db()
        if self._with_redis:
            self.redis.start()

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()
        if self._with_redis:
            self.redis.stop()
        self.pg.remove()

    def boot_only(self, components: tuple[str, ...], env: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Run the Jobs, then start `components` (`env`: extra env per component, a test's own)."""
        import shutil

        self.objects = self.render()
        dags = self.base / "dag-volume"
        shutil.copytree(E2E / "dags", dags, dirs_exist_ok=True)
        self.cluster = Cluster(self.objects, dags, self.base, ca_bundle=self.redis.ca)
        self.containers = airflow_containers(self.objects)
        self.admin_password = self.cluster.secrets["airflow-secrets"]["admin-password"]
        for job in ("migrate", "create-user"):
            if job in self.containers:
                p = Process(self.cluster, self.containers[job]).start()
                rc = p.wait(300)
                assert rc == 0, f"{job} Job failed ({rc}):\n{p.tail()}"
        for comp in components:
            p = Process(self.cluster, self.containers[comp])
            p.env.update((env or {}).get(comp, {}))
            self.procs[comp] = p.start()
        if "api-server" in components:
            api = self.containers["api-server"]
            self.port = int(next(a for a in api.spec["args"] if a.isdigit()))
            self.api = Api(f"http://127.0.0.1:{self.port}")
            self.api.wait_healthy(api.spec["readinessProbe"]["httpGet"]["path"], timeout=180)


@contextmanager
def front(
    base: Path,
    overrides: tuple[str, ...],
    components: tuple[str, ...] = ("api-server",),
    env: Mapping[str, Mapping[str, str]] | None = None,
    redis: bool = False,
    module: str = "front",
    secrets: Mapping[str, str] | None = None,
) -> Iterator[Front]:
    assert (AIRFLOW_VENV / "bin" / "airflow").exists(), f"no Airflow virtualenv at {AIRFLOW_VENV}: run `bash .ci/run`"
    t0 = time.time()
    d = Front(base, overrides, redis=redis, secrets=secrets)
    try:
        d.start_servers()
        d.boot_only(components, env)
        yield d
    finally:
        d.stop()
        TIMINGS[module] = time.time() - t0
        TIMINGS["end"] = time.time()


class Ingress:
    """What the UI's Ingress does for a browser: a request for https://<host>/... reaches the
    api-server over plain HTTP, with the Host and X-Forwarded-Proto/For headers a controller adds,
    from a peer address (here loopback, as from a controller pod in the cluster's private range)."""

    def __init__(self, host: str, port: int, proto: str = "https") -> None:
        self.host = host
        self.port = port
        self.proto = proto
        # A browser's cookie jar for this one site (the backend URL is http, so requests' own jar
        # would hold back the cookies the api-server marks Secure).
        self.cookies: dict[str, str] = {}

    def to_backend(self, url: str) -> str:
        prefix = f"{self.proto}://{self.host}"
        assert url.startswith(prefix + "/"), url
        return f"http://127.0.0.1:{self.port}{url[len(prefix) :]}"

    def request(self, method: str, url: str, data: dict[str, str] | None = None) -> requests.Response:
        headers = {"Host": self.host, "X-Forwarded-Proto": self.proto, "X-Forwarded-For": "198.51.100.23"}
        if method == "POST":
            # A browser posting a same-site form (Flask-WTF checks the referrer over https).
            headers["Referer"] = url
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        resp = requests.request(
            method, self.to_backend(url), headers=headers, data=data, allow_redirects=False, timeout=30
        )
        for c in resp.cookies:
            self.cookies[c.name] = c.value or ""
        return resp

    def get(self, url: str) -> requests.Response:
        return self.request("GET", url)


def wait_for(port: int) -> None:
    wait_port(port, timeout=60)
