"""`python -m stacks.render`: what a newcomer is told after a render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks.tooling.cli import main as render_main


def test_a_render_says_where_the_outputs_are_and_that_nothing_was_deployed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert render_main(["local", "--out", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert "Nothing was deployed" in said
    assert f'"outputs" in {tmp_path / "resources.json"}' in said
    assert 'masked as "[secret]"' in said and "--teardown" in said and "--graph" in said
    outputs = json.loads((tmp_path / "resources.json").read_text())["outputs"]
    assert outputs["uiAccess"].startswith("kubectl") and outputs["adminPassword"] == "[secret]"


def test_without_out_it_says_how_to_get_the_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert render_main(["local"]) == 0
    assert "python -m stacks.render local --out out/local" in capsys.readouterr().out


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        # `true` leaves before the render writes anything: every write meets a closed pipe.
        f"{sys.executable} -m stacks.render local | true",
        shell=True,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
