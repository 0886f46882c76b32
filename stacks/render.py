"""The one command line of the offline tooling: `python -m stacks.render --help`.

It lives in stacks/tooling/cli.py; this entry stays where the README, the CI scripts and older
checkouts (rendered by `--diff-against`) expect it.
"""

import gc
import logging
import os
import signal
import sys

if __name__ == "__main__":
    # A one-shot command: the cyclic collector would only walk the provider SDKs' ~10^6 objects,
    # again and again, for garbage the process exit frees anyway (a third of a render's time).
    gc.disable()

from stacks.tooling.cli import main  # noqa: E402 - after the collector is off: the imports are most of the heap

if __name__ == "__main__":
    # `python -m stacks.render STACK --diff-against main | head`: end quietly when the reader has gone,
    # as command-line tools do, instead of a BrokenPipeError traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    status = main()
    # Everything is written (files are closed by now); what is left is the interpreter freeing the
    # SDKs' objects one by one, about a second, so skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)
