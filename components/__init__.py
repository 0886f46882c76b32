"""Pulumi ComponentResources for airflow-k8s, one concern per module.

Cloud-agnostic pieces (namespace, airflow, in-cluster postgres/redis) never import a cloud SDK.
"""
