"""The offline tooling: run a stack file under Pulumi mocks, and review what it would do.

cli        the one command line, run as `python -m stacks.render`
engine     the real program under mocks, with a monitor that records the whole resource graph
render     a stack file's config, its run, and the files a render writes
diff       what a change does to a stack, against a git ref
teardown   what `pulumi destroy` would remove, and what could block it or leave something behind
graph      a mermaid picture of a render
critpath   how long `pulumi up` takes: the longest chain of creations, and the one the cloud forces
configdoc  the README's config reference, from the typed model
clouds/    each provider's facts for the above: mock outputs and invokes, stateful types, destroy blockers,
           creation times and physical prerequisites
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# What regenerates the README's generated sections; their markers name it.
WRITE_README = "python -m stacks.render --write-readme"
