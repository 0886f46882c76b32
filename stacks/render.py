"""The one command line of the offline tooling (see stacks/tooling/render.py)."""

import sys

from stacks.tooling.render import main

if __name__ == "__main__":
    sys.exit(main())
