"""The GitHub workflows: well-formed, pinned, least-privileged, and every script they call exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


def test_there_are_the_workflows_the_team_needs() -> None:
    assert {p.stem for p in WORKFLOWS} == {"ci", "pr-diff", "pr-diff-comment", "preview", "review-env", "destroy"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_well_formed_and_least_privileged(path: Path) -> None:
    doc = load(path)
    assert doc["name"] and doc["on"] and doc["jobs"]
    assert "permissions" in doc, "declare permissions: the default token is too broad"
    for name, job in doc["jobs"].items():
        # A pinned GitHub-hosted image, or one chosen by a repository variable that falls back to one.
        runner = job["runs-on"]
        assert re.fullmatch(r"ubuntu-\d\d\.\d\d|\$\{\{ .* \|\| 'ubuntu-\d\d\.\d\d' \}\}", runner), name
        assert job["timeout-minutes"] <= 90, name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_action_is_pinned_to_an_exact_version(path: Path) -> None:
    for step in steps(load(path)):
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{path.name}: {step['uses']} is not an exact version or commit"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_referenced_script_exists(path: Path) -> None:
    for step in steps(load(path)):
        for ref in re.findall(r"(?:bash\s+)?(\.(?:ci|github)/[\w./-]+)", step.get("run", "")):
            assert (ROOT / ref).is_file(), f"{path.name} runs {ref}, which does not exist"
    assert all((ROOT / s).is_file() for s in ("requirements.txt",))


def test_the_ci_workflow_runs_the_readme_test_command() -> None:
    runs = [s.get("run", "") for s in steps(load(ROOT / ".github/workflows/ci.yml"))]
    assert "bash .ci/run" in runs
    assert "bash .ci/run" in (ROOT / "README.md").read_text()


def test_forks_get_the_offline_diff_but_never_credentials() -> None:
    diff = load(ROOT / ".github/workflows/pr-diff.yml")
    assert (
        diff["permissions"] == {"contents": "read"}
        and "secrets." not in (ROOT / ".github/workflows/pr-diff.yml").read_text()
    )
    for name in ("preview", "review-env"):
        for job in load(ROOT / f".github/workflows/{name}.yml")["jobs"].values():
            assert "head.repo.full_name == github.repository" in job["if"]


def test_no_long_lived_cloud_keys() -> None:
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    assert "aws-access-key-id" not in text and "AZURE_CLIENT_SECRET" not in text and "creds:" not in text
    assert "id-token: write" in text  # OIDC to AWS and Azure


@pytest.mark.parametrize(
    "stack,ok",
    [
        ("aws-dev", True),
        ("azure-dev", True),
        ("review-pr-12", True),
        ("aws-prod", False),
        ("azure-prod", False),
        ("review-pr-x", False),
    ],
)
def test_only_test_stacks_can_be_destroyed_by_automation(stack: str, ok: bool) -> None:
    done = subprocess.run(["bash", str(ROOT / ".github/scripts/check-test-stack.sh"), stack], capture_output=True)
    assert (done.returncode == 0) == ok


def test_the_prod_api_server_is_previewed_from_a_runner_it_admits() -> None:
    """aws-prod's API server admits only listed CIDRs (or, private, its VPC): a GitHub-hosted runner,
    whose address is any of many, cannot reach it, so its preview runs on the runner
    PRIVATE_API_RUNNER names (one whose egress is listed, or inside the network), or not at all."""
    prod = yaml.safe_load((ROOT / "stacks" / "Pulumi.aws-prod.yaml").read_text())
    assert prod["config"]["airflow-k8s:aws"]["cluster"].get("publicEndpoint", True) is True
    assert all(not c.endswith("/0") for c in prod["config"]["airflow-k8s:aws"]["cluster"]["publicAccessCidrs"])
    [job] = load(ROOT / ".github/workflows/preview.yml")["jobs"].values()
    assert "matrix.stack == 'aws-prod' && vars.PRIVATE_API_RUNNER" in job["runs-on"]
    assert "vars.PRIVATE_API_RUNNER != ''" in job["env"]["CLOUD_CONFIGURED"]


def test_the_prod_preview_waits_for_a_reviewer_before_it_gets_credentials() -> None:
    """Review finding 6: the aws-prod leg runs the pull request's code on a runner inside the
    production VPC with production credentials: it runs in a GitHub Environment whose required
    reviewers approve each run, and whose name the prod role's OIDC trust can require."""
    [job] = load(ROOT / ".github/workflows/preview.yml")["jobs"].values()
    env = job["environment"]
    assert env == (
        "${{ (matrix.stack == 'aws-prod' && 'aws-prod-preview') || "
        "(matrix.stack == 'azure-prod' && 'azure-prod-preview') || 'cloud-preview' }}"
    )
    readme = (ROOT / "README.md").read_text()
    assert "aws-prod-preview" in readme and "required reviewers" in readme and "ephemeral" in readme
    for leg in ("aws-prod-preview", "azure-prod-preview"):  # the OIDC subject each prod identity trusts
        assert f"environment:{leg}" in readme, leg


def test_every_aws_destroy_removes_the_log_group_eks_recreates() -> None:
    """Late control-plane log deliveries re-create /aws/eks/<cluster>/cluster after the stack
    deleted it; the next `up` of that stack name would fail on it."""
    for name in ("destroy", "review-env"):
        text = [
            s.get("run", "") + str(s.get("with", {}).get("command", ""))
            for s in steps(load(ROOT / f".github/workflows/{name}.yml"))
        ]
        destroys = [i for i, t in enumerate(text) if t == "destroy"]
        assert destroys, name
        for i in destroys:
            assert 'eks-log-group-cleanup.sh "$STACK"' in text[i + 1], name
            # Worker claims' EBS volumes the CSI driver had no time to delete (review finding 7).
            assert 'ebs-volume-cleanup.sh "$STACK"' in text[i + 2], name


def test_log_group_cleanup_deletes_the_group_the_stack_names(tmp_path: Path) -> None:
    from tests.render import render

    [cluster] = [r for r in render("aws-dev").resources if r.type == "aws:eks/cluster:Cluster"]
    group = f"/aws/eks/{cluster.inputs['name']}/cluster"
    calls = tmp_path / "calls"
    fake = tmp_path / "aws"
    # A fake AWS CLI: the group exists until it is deleted.
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {calls}\n'
        f'if [[ "$2" == describe-log-groups ]]; then grep -q delete-log-group {calls} || echo "{group}"; fi\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    script = ROOT / ".github/scripts/eks-log-group-cleanup.sh"
    out = subprocess.run(["bash", str(script), "aws-dev", "eu-west-1", "0"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    log = calls.read_text()
    assert f"delete-log-group --region eu-west-1 --log-group-name {group}" in log
    assert f"{group}: deleted" in out.stdout and "not present" not in out.stdout
    # Gone (or never re-created): nothing is deleted.
    calls.write_text("delete-log-group (earlier)\n")
    again = subprocess.run(["bash", str(script), "aws-dev", "eu-west-1", "0"], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and calls.read_text().count("delete-log-group") == 1


def test_ebs_cleanup_deletes_only_the_stacks_available_csi_volumes(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "aws"
    # A fake AWS CLI: describe-volumes answers with the volumes its filters select.
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {calls}\n'
        'if [[ "$2" == describe-volumes ]]; then echo "vol-0aaa vol-0bbb"; fi\n'
    )
    fake.chmod(0o755)
    script = ROOT / ".github/scripts/ebs-volume-cleanup.sh"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run(["bash", str(script), "aws-dev", "eu-west-1"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    describe, *deletes = calls.read_text().splitlines()
    for f in (
        "tag:pulumi-stack,Values=aws-dev",
        "tag:app,Values=airflow-k8s",
        "tag:ebs.csi.aws.com/cluster,Values=true",
    ):
        assert f"Name={f}" in describe, f
    assert "Name=status,Values=available" in describe and "--region eu-west-1" in describe
    assert deletes == [f"ec2 delete-volume --region eu-west-1 --volume-id {v}" for v in ("vol-0aaa", "vol-0bbb")]


def test_log_group_cleanup_rides_out_a_failed_look_up(tmp_path: Path) -> None:
    """Review finding 14: one throttled describe call failed the destroy job after a good destroy."""
    calls = tmp_path / "calls"
    fake = tmp_path / "aws"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {calls}\n'
        f'if [[ "$2" == describe-log-groups && $(grep -c describe {calls}) == 1 ]]; then exit 255; fi\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "CLEANUP_PAUSE_SECONDS": "0"}
    script = ROOT / ".github/scripts/eks-log-group-cleanup.sh"
    out = subprocess.run(["bash", str(script), "aws-dev", "us-east-2", "0"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert calls.read_text().count("describe-log-groups --region us-east-2") == 2
    assert "not present" in out.stdout
    # No region, no guess: the caller passes the stack's.
    assert subprocess.run(["bash", str(script), "aws-dev"], env=env, capture_output=True).returncode != 0


def test_aws_workflows_use_the_region_of_the_stack_file(tmp_path: Path) -> None:
    """Review finding 14: eu-west-1 was written into the workflows, whatever aws.region said."""
    for name in ("destroy", "review-env", "preview"):
        text = (ROOT / f".github/workflows/{name}.yml").read_text()
        assert "eu-west-1" not in text, name
        order = [s.get("name", "") + s.get("uses", "") for s in steps(load(ROOT / f".github/workflows/{name}.yml"))]
        region = next(i for i, s in enumerate(order) if "region" in s.lower())
        assert region < next(i for i, s in enumerate(order) if "configure-aws-credentials" in s), name
        for step in steps(load(ROOT / f".github/workflows/{name}.yml")):
            if "cleanup.sh" in step.get("run", ""):
                assert step["run"].endswith('"$STACK" "$STACK_REGION"'), name
    script = ROOT / ".github/scripts/stack-region.sh"
    (tmp_path / "Pulumi.aws-dev.yaml").write_text(
        "config:\n  airflow-k8s:cloud: aws\n  airflow-k8s:aws:\n    protect: false\n    region: us-east-2  # Ohio\n"
        "    network:\n      cidr: 10.0.0.0/16\n"
    )
    env = {**os.environ, "STACKS_DIR": str(tmp_path)}
    for stack in ("aws-dev", "review-pr-12"):
        out = subprocess.run(["bash", str(script), stack], env=env, capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() == "us-east-2", (stack, out.stderr)
    real = subprocess.run(["bash", str(script), "aws-prod"], capture_output=True, text=True)
    assert (
        real.stdout.strip()
        == yaml.safe_load((ROOT / "stacks/Pulumi.aws-prod.yaml").read_text())["config"]["airflow-k8s:aws"]["region"]
    )


OFFLINE_DIFF = ROOT / ".github/scripts/offline-diff.sh"


def test_the_offline_diff_shows_each_stacks_deploy_time_on_the_base_and_now() -> None:
    """Reviewers see a deploy-time regression in the pull request: the real script and tooling."""
    out = subprocess.run(
        ["bash", str(OFFLINE_DIFF), "HEAD", "local"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    [line] = [x for x in out.stdout.splitlines() if x.startswith("Estimated `pulumi up`")]
    now, base = re.findall(r"(\d+\.\d) min", line)
    assert now == base and float(now) > 0 and "slower" not in line
    assert "local: no changes against HEAD" in out.stdout


def test_the_offline_diff_flags_a_stack_more_than_five_percent_slower(tmp_path: Path) -> None:
    # A stand-in for python: the base estimates 20 minutes, the change 21.5 (7.5% slower).
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'case " $* " in\n'
        '  *" --critical-path "*) if [ "$PWD" = "$REPO" ]; then\n'
        '      echo "estimated \\`pulumi up\\` of a new stack: 21.5 min (longest chain)";\n'
        '    else echo "estimated \\`pulumi up\\` of a new stack: 20.0 min (longest chain)"; fi ;;\n'
        '  *) echo "$3: no changes" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    out = subprocess.run(
        ["bash", str(OFFLINE_DIFF), "HEAD", "aws-dev"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": str(fake), "REPO": str(ROOT)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Estimated `pulumi up` of a new stack: 21.5 min (base: 20.0 min) :hourglass: more than 5% slower" in (
        out.stdout
    ), out.stdout
