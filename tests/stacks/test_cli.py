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


def test_the_command_ends_without_the_interpreter_teardown_but_loses_no_output(tmp_path: Path) -> None:
    # The entry leaves with os._exit (stacks/render.py): what was printed into a pipe and the files
    # written must all be there, and the status must be the command's own.
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "stacks.render", "local", "--out", str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(render_next_steps_tail(tmp_path)), done.stdout[-400:]
    json.loads((tmp_path / "resources.json").read_text())
    bad = subprocess.run(
        [sys.executable, "-m", "stacks.render", "local", "--set", "airflow.executor=Nope"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "airflow.executor" in bad.stderr, (bad.returncode, bad.stderr)


def render_next_steps_tail(tmp_out: Path) -> str:
    from stacks.tooling import cli

    return cli.next_steps("local", tmp_out, revealed=False).rstrip().splitlines()[-1]


def test_a_render_leaves_the_cyclic_collector_as_it_found_it() -> None:
    import gc

    from stacks.main import program
    from stacks.tooling import engine

    assert gc.isenabled()
    engine.run(program, stack="local")
    assert gc.isenabled()
    gc.disable()
    try:
        engine.run(program, stack="local")
        assert not gc.isenabled()
    finally:
        gc.enable()
