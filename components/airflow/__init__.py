"""Airflow 3 itself, as a package of concerns (see component.py for the orchestrating class)."""

from components.airflow.component import Airflow, AirflowArgs, DagSource
from components.airflow.pods import AIRFLOW_GID, AIRFLOW_UID

__all__ = ["AIRFLOW_GID", "AIRFLOW_UID", "Airflow", "AirflowArgs", "DagSource"]
