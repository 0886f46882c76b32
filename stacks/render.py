"""The one command line of the offline tooling: `python -m stacks.render --help`.

It lives in stacks/tooling/cli.py; this entry stays where the README, the CI scripts and older
checkouts (rendered by `--diff-against`) expect it.
"""

import sys

from stacks.tooling.cli import main

if __name__ == "__main__":
    sys.exit(main())
