"""The program behind `__main__.py`, importable so the render engine and tests run the same code."""

from __future__ import annotations

import pulumi

from stacks import config as stack_config


def program() -> None:
    # Validate everything before the first resource is registered: bad input fails at preview with a
    # message naming the key, and no half-made stack.
    try:
        cfg = stack_config.from_pulumi_config()
    except stack_config.ConfigError as e:
        raise pulumi.RunError(str(e)) from None
    for message in cfg.unused_settings() + cfg.budget_warnings():
        pulumi.log.warn(message)
    if cfg.cloud == "local":
        from stacks import local

        outputs = local.build(cfg)
    elif cfg.cloud == "aws":
        from stacks import aws

        outputs = aws.build(cfg)
    elif cfg.cloud == "azure":
        from stacks import azure

        outputs = azure.build(cfg)
    else:  # pragma: no cover - the Literal type admits only the clouds above
        raise pulumi.RunError(f"{stack_config.PROJECT}:cloud: unknown cloud {cfg.cloud!r}")
    for key, value in outputs.items():
        if value is not None:
            pulumi.export(key, value)
