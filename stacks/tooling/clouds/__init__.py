"""Every provider the stacks use, with what the offline tooling knows about its resource types.

Adding a cloud: a module here that builds a `CloudFacts` (see facts.py), listed in `ALL`.
"""

from __future__ import annotations

from stacks.tooling.clouds import aws, azure, kubernetes, random
from stacks.tooling.clouds.facts import CloudFacts

ALL: tuple[CloudFacts, ...] = (aws.FACTS, azure.FACTS, kubernetes.FACTS, random.FACTS)


def facts_for(type_token: str) -> CloudFacts | None:
    """The facts of the provider a resource or invoke type token belongs to (None: a component)."""
    return next((c for c in ALL if c.owns(type_token)), None)
