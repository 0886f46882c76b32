"""AWS instance class names (`db.m7g.large`, `cache.r7g.xlarge`): checked at preview, because a typo
would otherwise surface only as an API error halfway through `pulumi up`."""

from __future__ import annotations

INSTANCE_SIZES = {"micro", "small", "medium", "large", "xlarge"} | {f"{n}xlarge" for n in (2, 4, 8, 12, 16, 24, 32, 48)}


def check_class(value: str, prefix: str, families: set[str]) -> str:
    """`value` if it is `<prefix>.<family>.<size>` with a known family and size; else a ValueError."""
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != prefix or parts[1] not in families or parts[2] not in INSTANCE_SIZES:
        raise ValueError(
            f"{value!r} is not a {prefix}.<family>.<size> class; families: {', '.join(sorted(families))}; "
            f"sizes: micro, small, medium, large, xlarge, 2xlarge ... 48xlarge"
        )
    return value


# Memory of an RDS instance class, from its family and size (AWS's DB instance class tables,
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.DBInstanceClass.Summary.html):
# burstable classes by size, the others as vCPUs (2 for large, 4 per xlarge) times GiB per vCPU.
BURSTABLE_GIB = {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32}
GIB_PER_VCPU = {"m": 4, "r": 8, "z": 8, "x2g": 16, "x2idn": 16, "x2iedn": 32, "x2iezn": 32}


def _vcpus(size: str) -> float:
    fixed = {"micro": 0.25, "small": 0.5, "medium": 1, "large": 2, "xlarge": 4}
    return fixed[size] if size in fixed else 4 * int(size.removesuffix("xlarge"))


def rds_memory_gib(instance_class: str) -> float:
    """Nominal memory (GiB) of a `db.<family>.<size>` class that check_class accepted."""
    _, family, size = instance_class.split(".")
    if family.startswith("t"):
        return BURSTABLE_GIB[size]
    per_vcpu = GIB_PER_VCPU.get(family) or GIB_PER_VCPU[family[0]]
    return _vcpus(size) * per_vcpu
