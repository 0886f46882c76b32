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
