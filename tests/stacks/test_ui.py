"""Issue 14, item 1: the UI at https://<ui.host>/ through an Ingress, and the stack says so.

The cloud stacks' controllers (AWS Load Balancer Controller, AKS application routing) have their
own tests; here is what is the same everywhere: the Ingress, its validity and the `uiUrl` output.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from stacks.main import program
from stacks.tooling import engine
from stacks.tooling.render import load_stack_config
from tests.render import K8S_VERSIONS, named, objects, render

UI = ("ui.host=airflow.example.com", "ui.ingressClassName=nginx")
ISSUER = (*UI, "ui.tls.clusterIssuer=letsencrypt-prod")
SECRET = (*UI, "ui.tls.secretName=airflow-cert")


def test_without_a_host_there_is_no_ingress_and_the_url_is_the_port_forward() -> None:
    run = render("local")
    assert objects(run, "Ingress") == []
    assert run.outputs["uiUrl"] == "http://localhost:8080"


@pytest.mark.parametrize("variant", [ISSUER, SECRET], ids=["cert-manager", "existing-secret"])
def test_the_ui_is_served_over_https_at_its_host(variant: tuple[str, ...]) -> None:
    run = render("local", *variant)
    ing = named(run, "Ingress", "airflow-ui")
    spec = ing["spec"]
    assert spec["ingressClassName"] == "nginx"
    [rule] = spec["rules"]
    assert rule["host"] == "airflow.example.com"
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "airflow-api-server", "port": {"number": 8080}}
    [tls] = spec["tls"]
    assert tls["hosts"] == ["airflow.example.com"]
    annotations = ing["metadata"].get("annotations") or {}
    if "ui.tls.clusterIssuer=letsencrypt-prod" in variant:
        # cert-manager's ingress-shim issues into the Secret the Ingress names.
        assert annotations == {"cert-manager.io/cluster-issuer": "letsencrypt-prod"}
        assert tls["secretName"] == "airflow-ui-tls"
    else:
        assert annotations == {} and tls["secretName"] == "airflow-cert"
    assert run.outputs["uiUrl"] == "https://airflow.example.com/"


def test_the_ingress_waits_for_the_service_it_routes_to() -> None:
    run = render("local", *ISSUER)
    [ing] = [r for r in run.resources if r.type == "kubernetes:networking.k8s.io/v1:Ingress"]
    [svc] = [
        r
        for r in run.resources
        if r.type == "kubernetes:core/v1:Service"
        and (r.inputs.get("metadata") or {}).get("name") == "airflow-api-server"
    ]
    assert svc.urn in ing.dependencies


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_ingress_is_strictly_valid(version: str) -> None:
    for obj in objects(render("local", *ISSUER), "Ingress"):
        kubernetes_validate.validate(obj, version, strict=True)


BAD = [
    ("local", ("ui.host=airflow.example.com",), "airflow-k8s:ui.ingressClassName", "existing IngressClass"),
    ("local", UI, "airflow-k8s:ui.tls", "HTTPS only"),
    ("local", (*UI, "ui.tls.secretName=a", "ui.tls.clusterIssuer=b"), "airflow-k8s:ui.tls.clusterIssuer", "not both"),
    ("local", ("ui.ingressClassName=nginx",), "airflow-k8s:ui.ingressClassName", "only with ui.host"),
    ("local", ("ui.host=Airflow.Example.com",), "airflow-k8s:ui.host", "must match"),
    ("local", ("ui.host=10.0.0.1",), "airflow-k8s:ui.host", "is an IP address"),
    ("local", ("ui.host=https://airflow.example.com/",), "airflow-k8s:ui.host", "must match"),
    ("local", ("ui.host='*.example.com'",), "airflow-k8s:ui.host", "must match"),
    ("aws-dev", ("ui.ingressClassName=nginx",), "airflow-k8s:ui.ingressClassName", "local stack only"),
    ("azure-dev", ("ui.tls.secretName=x",), "airflow-k8s:ui.tls.secretName", "local stack only"),
]


@pytest.mark.parametrize("stack,overrides,key,fragment", BAD)
def test_bad_ui_input_names_the_key_and_registers_nothing(
    stack: str, overrides: tuple[str, ...], key: str, fragment: str
) -> None:
    config, secret_keys = load_stack_config(stack, list(overrides))
    run = engine.run(program, config=config, secret_keys=secret_keys, stack=stack)
    assert run.error is not None and key + ":" in str(run.error) and fragment in str(run.error), str(run.error)
    assert run.resources == []
