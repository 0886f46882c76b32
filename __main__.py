"""airflow-k8s: read the typed config, build the stack for its cloud, export its outputs."""

from stacks.main import program

program()
