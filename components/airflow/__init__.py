"""Airflow 3 itself, as a package of concerns (see component.py for the orchestrating class)."""

from components.airflow.component import AIRFLOW_GID, AIRFLOW_UID, Airflow, AirflowArgs, DagSource

__all__ = ["AIRFLOW_GID", "AIRFLOW_UID", "Airflow", "AirflowArgs", "DagSource"]
