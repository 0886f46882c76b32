"""The one command line of the offline tooling: `python -m stacks.render --help`.

It lives in stacks/tooling/cli.py; this entry stays where the README, the CI scripts and older
checkouts (rendered by `--diff-against`) expect it.
"""

import signal
import sys

from stacks.tooling.cli import main

if __name__ == "__main__":
    # `python -m stacks.render STACK --diff-against main | head`: end quietly when the reader has gone,
    # as command-line tools do, instead of a BrokenPipeError traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
