"""The mermaid pictures: derived from the graph, and the README's copies current."""

from __future__ import annotations

import pytest

from stacks.tooling import graph
from stacks.tooling.render import main as render_main
from tests.render import render


@pytest.mark.parametrize("stack", sorted(set(graph.README_STACKS.values())))
def test_readme_pictures_are_current(stack: str) -> None:
    text = graph.README.read_text()
    assert graph.current_block(text, stack) == graph.readme_block(stack, render(stack)), (
        "stale: run `python -m stacks.graph --write`")


def test_edges_follow_dependencies() -> None:
    picture = graph.mermaid(render("aws-prod"))
    assert "  airflow --> database" in picture  # the migration Job waits for RDS
    assert "  namespace --> eks" in picture  # Kubernetes objects go through the cluster's provider
    assert "  database --> airflow" not in picture


def test_cli_writes_graph_file(tmp_path) -> None:
    assert render_main(["local", "--graph", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "graph.mmd").read_text().startswith("flowchart LR")
