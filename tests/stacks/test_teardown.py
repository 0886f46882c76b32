"""`render --teardown`: destroy order and what could block it or leave something behind."""

from __future__ import annotations

import pytest

from stacks.tooling.cli import main as render_main
from stacks.tooling.teardown import _edges, destroy_order, findings
from tests.render import render


@pytest.mark.parametrize("stack", ["local", "aws-dev", "azure-dev"])
def test_dev_stacks_report_nothing_blocking_or_left_behind(stack: str) -> None:
    found = findings(render(stack))
    assert not [f for f in found if f.severity in ("blocks", "leaves")], found


@pytest.mark.parametrize("stack", ["aws-prod", "azure-prod"])
def test_prod_stacks_report_their_protection(stack: str) -> None:
    found = findings(render(stack))
    protected = {f.resource.rsplit("::", 1)[-1] for f in found if f.severity == "blocks" and "protected" in f.message}
    assert protected == {r.name for r in render(stack).resources if r.options.get("protect")}
    assert len(protected) >= 3


def test_rds_final_snapshot_is_reported_as_left_behind() -> None:
    found = findings(render("aws-prod"))
    assert any(f.severity == "leaves" and "final snapshot" in f.message for f in found)


@pytest.mark.parametrize("stack", ["aws-dev", "azure-dev"])
def test_load_balancer_service_is_a_note_when_ordered_before_the_network(stack: str) -> None:
    found = findings(render(stack, "airflow.apiServer.serviceType=LoadBalancer"))
    [lb] = [f for f in found if "load balancer" in f.message]
    assert lb.severity == "note" and lb.resource.endswith("airflow-api-server-svc")


@pytest.mark.parametrize("stack", ["local", "aws-dev", "azure-prod"])
def test_destroy_order_removes_dependents_first(stack: str) -> None:
    run = render(stack)
    position = {r.urn: n for n, r in enumerate(destroy_order(run))}
    assert len(position) == len(run.resources)
    for r in run.resources:
        for dep in _edges(r):
            if dep in position:
                assert position[r.urn] < position[dep], (r.name, dep)


def test_cli_exit_status_says_whether_anything_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    assert render_main(["aws-dev", "--teardown"]) == 0
    assert "nothing blocks destroy." in capsys.readouterr().out
    assert render_main(["aws-prod", "--teardown"]) == 1
    assert "[blocks]" in capsys.readouterr().out


def test_eks_log_group_recreation_is_a_note_with_its_cleanup() -> None:
    [note] = [f for f in findings(render("aws-dev")) if "re-create" in f.message]
    assert note.severity == "note" and "eks-log-group-cleanup.sh" in note.message
    assert note.resource.endswith("eks-cluster")


def test_worker_volumes_that_may_outlive_destroy_are_a_note_with_their_cleanup() -> None:
    found = findings(render("aws-dev", "airflow.workers.storageSize=20Gi"))
    [note] = [f for f in found if "EBS" in f.message]
    assert note.severity == "note" and "ebs-volume-cleanup.sh" in note.message
    assert "tag:pulumi-stack" in note.message and "aws-dev" in note.message
    assert not [f for f in findings(render("aws-dev")) if "EBS" in f.message]  # no claims, no volumes
