"""How long the offline render of each stack file takes, as a newcomer runs it: a fresh process per
run (imports included), the median of several. A benchmark that prints figures, not a timed test.

    python -m stacks.tooling.benchmark [--runs 7] [STACK ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from stacks.tooling import ROOT
from stacks.tooling.render import stack_names

TARGET_SECONDS = 2.0  # issue 13: every stack file renders in at most 2 s (median) on a 2-core machine


def time_render(stack: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "stacks.render", stack], cwd=ROOT, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"render of {stack} failed:\n{done.stderr[-2000:]}")
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stacks.tooling.benchmark", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("stacks", nargs="*", help="stack files (default: all)")
    ap.add_argument("--runs", type=int, default=7, help="runs per stack (default 7)")
    args = ap.parse_args(argv)
    print(f"{'stack':<12} {'median':>8} {'min':>8} {'max':>8}   (seconds, {args.runs} fresh processes each)")
    for stack in args.stacks or stack_names():
        times = [time_render(stack) for _ in range(args.runs)]
        median = statistics.median(times)
        mark = "" if median <= TARGET_SECONDS else f"   over the {TARGET_SECONDS:.0f} s target"
        print(f"{stack:<12} {median:8.2f} {min(times):8.2f} {max(times):8.2f}{mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
