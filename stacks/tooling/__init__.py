"""The offline tooling: run a stack file under Pulumi mocks, and review what it would do.

engine     the real program under mocks, with a monitor that records the whole resource graph
render     a stack file's config, its run, and the files a render writes
diff       what a change does to a stack, against a git ref
teardown   what `pulumi destroy` would remove, and what could block it or leave something behind
graph      a mermaid picture of a render
configdoc  the README's config reference, from the typed model
"""
