"""Strict JSON schemas of KEDA's ScaledObject and TriggerAuthentication (keda.sh/v1alpha1) at the
KEDA version the program pins (components/airflow/autoscaling.py KEDA_VERSION), for validating
every rendered object: unknown fields are refused at every level, as the API server's structural
pruning would silently drop them.

Provenance: written here from the field lists, types, formats and `required` lists of KEDA's own
CRDs, config/crd/bases/keda.sh_scaledobjects.yaml (blob f0302424ebce7f1903433910ae7a978c73ae85f3)
and config/crd/bases/keda.sh_triggerauthentications.yaml (blob e345ac8f39d464ad6fb41d202dfd3de5e7b36911)
at tag v2.20.2 (commit 68a5b5028f35b22d50597c69819ab32c4e92f21a) of github.com/kedacore/keda, which
is also the kedacore `keda` chart 2.20.2's templates/crds/. Every property of the objects' `spec`
is listed (so a misspelt one fails); the parts of a TriggerAuthentication the program never renders
(cloud secret stores, Vault, OAuth2) are typed as objects without their inner detail. Raising
KEDA_VERSION means re-reading these two files at the new tag.
"""

from __future__ import annotations

from typing import Any

KEDA_SCHEMA_VERSION = "2.20.2"

INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
STRING = {"type": "string"}
DNS_SUBDOMAIN = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                 "maxLength": 253}  # fmt: skip


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _policies() -> dict[str, Any]:
    return {"type": "array", "items": obj({"periodSeconds": INT32, "type": STRING, "value": INT32},
                                          ["periodSeconds", "type", "value"])}  # fmt: skip


def _rules() -> dict[str, Any]:
    return obj({
        "policies": _policies(), "selectPolicy": STRING, "stabilizationWindowSeconds": INT32,
        # A resource.Quantity (int-or-string in the CRD).
        "tolerance": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    })  # fmt: skip


METADATA = obj(
    {
        "name": DNS_SUBDOMAIN,
        "namespace": DNS_SUBDOMAIN,
        "labels": {"type": "object", "additionalProperties": STRING},
        "annotations": {"type": "object", "additionalProperties": STRING},
    },
    ["name", "namespace"],
)

SCALED_OBJECT = obj(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": METADATA,
        "spec": obj(
            {
                "advanced": obj(
                    {
                        "horizontalPodAutoscalerConfig": obj(
                            {
                                "behavior": obj({"scaleDown": _rules(), "scaleUp": _rules()}),
                                "name": STRING,
                            }
                        ),
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "scalingModifiers": obj(
                            {"activationTarget": STRING, "formula": STRING, "metricType": STRING, "target": STRING}
                        ),
                    }
                ),  # fmt: skip
                "cooldownPeriod": INT32,
                "fallback": obj(
                    {"behavior": STRING, "failureThreshold": INT32, "replicas": INT32}, ["failureThreshold", "replicas"]
                ),  # fmt: skip
                "idleReplicaCount": INT32,
                "initialCooldownPeriod": INT32,
                "maxReplicaCount": INT32,
                "minReplicaCount": INT32,
                "pollingInterval": INT32,
                "scaleTargetRef": obj(
                    {
                        "apiVersion": STRING,
                        "envSourceContainerName": STRING,
                        "kind": STRING,
                        "name": {"type": "string", "minLength": 1},
                    },
                    ["name"],
                ),  # fmt: skip
                "triggers": {
                    "type": "array",
                    "items": obj(
                        {
                            "authenticationRef": obj({"kind": STRING, "name": STRING}, ["name"]),
                            "metadata": {"type": "object", "additionalProperties": STRING},
                            "metricType": STRING,
                            "name": STRING,
                            "type": STRING,
                            "useCachedMetrics": {"type": "boolean"},
                        },
                        ["metadata", "type"],
                    ),
                },
            },
            ["scaleTargetRef", "triggers"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)

_OPAQUE = {"type": "object"}  # parts of a TriggerAuthentication the program does not render
_REFS = {"type": "array"}

TRIGGER_AUTHENTICATION = obj(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": METADATA,
        "spec": obj(
            {
                "awsSecretManager": _OPAQUE,
                "azureKeyVault": _OPAQUE,
                "boundServiceAccountToken": _REFS,
                "configMapTargetRef": _REFS,
                "env": _REFS,
                "filePath": STRING,
                "gcpSecretManager": _OPAQUE,
                "hashiCorpVault": _OPAQUE,
                "oauth2": _OPAQUE,
                "podIdentity": _OPAQUE,
                "secretTargetRef": {
                    "type": "array",
                    "items": obj({"key": STRING, "name": STRING, "parameter": STRING}, ["key", "name", "parameter"]),
                },
            }
        ),  # fmt: skip
    },
    ["apiVersion", "kind", "metadata", "spec"],
)

SCHEMAS = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTHENTICATION}
