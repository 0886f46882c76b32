"""Test-wide settings."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws imports its own deprecated aliases (e.g. BucketWebsiteConfigurationV2) on import;
    # the noise would hide warnings about our code.
    config.addinivalue_line("filterwarnings", "ignore:.*has been deprecated in favor of.*:DeprecationWarning")
