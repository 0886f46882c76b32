"""The building blocks every component's typed settings are made of.

Each component declares its settings model next to itself (the pulumi-eks habit: the args type lives
with the component and documents every field). They share the conventions here: camelCase keys,
unknown keys rejected, frozen values, and `bad()` for an error about one sub-key that the stack's
error formatting (stacks/config.py) turns into a full key path.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_NAME = r"[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?)*\.?"
# A Kubernetes quantity (apimachinery resource.Quantity): a number, then a binary-SI suffix, a
# decimal-SI suffix or a decimal exponent. Signs are left out: no size or request here is negative.
QUANTITY = r"^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][-+]?\d+)?$"


def bad(key: str, message: str) -> ValueError:
    """A cross-field error that names the sub-key it is about (relative to the model raising it)."""
    return ValueError(f"[{key}] {message}")


class SettingsModel(BaseModel):
    """Base of every settings model: camelCase keys, unknown keys are errors, values frozen."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=False,
        frozen=True,
        validate_default=True,
        # `--set aws.database.engineVersion=17.7` and YAML `ref: 3.1` arrive as numbers.
        coerce_numbers_to_str=True,
    )


def _host(value: str) -> str:
    """A bare host: a DNS name or an IP address, nothing that could carry a path, query or port into a URL."""
    try:
        ipaddress.ip_address(value.strip("[]"))
        return value.strip("[]")
    except ValueError:
        pass
    if ":" in value and re.fullmatch(r"[^:/?#]+:\d+", value):
        raise ValueError(f"{value!r}: give the host only; the port goes in 'port'")
    if len(value) > 253 or not re.fullmatch(DNS1123_NAME, value.lower()):
        raise ValueError(
            f"{value!r} is not a host name or IP address (letters, digits, '-' and '.'; no scheme, port, path, "
            "query or spaces)"
        )
    return value


def has_control_character(value: str) -> bool:
    """NUL, newline, tab, DEL, ...: they end up in URLs, env vars and printed commands."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def _printable(value: str) -> str:
    if has_control_character(value):
        raise ValueError("contains a control character (NUL, newline, tab, ...), which is not allowed")
    return value


def _printable_secret(value: SecretStr) -> SecretStr:
    _printable(value.get_secret_value())  # the message never echoes the value
    return value


def _ipv4_cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        raise ValueError(f"{value!r} is not an IPv4 CIDR without host bits, such as '10.0.0.0/16' ({e})") from None
    if net.version != 4:
        raise ValueError(f"{value!r} is not an IPv4 CIDR, such as '10.0.0.0/16'")
    return value


Ipv4Cidr = Annotated[str, AfterValidator(_ipv4_cidr)]
"""An IPv4 network such as '10.0.0.0/16', checked where it is declared so an error names its own key."""

HostName = Annotated[str, Field(min_length=1), AfterValidator(_host)]
"""A DNS name or IP address that goes into a connection URL."""
PrintableStr = Annotated[str, AfterValidator(_printable)]
"""Free text without control characters (they end up in URLs, env vars and printed commands)."""
PrintableSecret = Annotated[SecretStr, AfterValidator(_printable_secret)]

_UNIT = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_UNIT.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60})


def quantity_value(value: str) -> float:
    """A quantity's value in base units (bytes, cores): '1536Mi', '2Gi', '250m', '1e9'."""
    m = re.fullmatch(QUANTITY, value)
    if m is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as '512Mi', '2Gi', '250m' or '1'")
    suffix = m.group(3) or ""
    if suffix[:1] in ("e", "E"):
        return float(m.group(1)) * 10 ** int(suffix[1:])
    return float(m.group(1)) * _UNIT[suffix]


def _positive_quantity(value: str) -> str:
    if quantity_value(value) <= 0:
        raise ValueError(f"{value!r} must be more than zero")
    return value


Quantity = Annotated[str, AfterValidator(_positive_quantity)]
"""A Kubernetes quantity above zero ('512Mi', '2Gi', '250m'); the error says what a quantity looks like."""
DnsLabel = Annotated[str, Field(pattern=DNS1123_LABEL, max_length=63)]


def defaults(model: type[SettingsModel]) -> Any:
    """A `default_factory` giving `model` with all its own defaults (and validated like input)."""
    return lambda: model.model_validate({})


class Resources(SettingsModel):
    """Requests and limits for one container."""

    cpu_request: Quantity = Field("250m", description="CPU request.")
    memory_request: Quantity = Field("512Mi", description="Memory request.")
    cpu_limit: Quantity | None = Field(
        None, description="CPU limit; unset by default so a busy component is throttled, not capped."
    )
    memory_limit: Quantity = Field("1Gi", description="Memory limit (also the OOM bound).")

    @model_validator(mode="after")
    def _request_within_limit(self) -> Resources:
        # The API server refuses a request above its limit ("must be less than or equal to ... limit").
        if quantity_value(self.memory_request) > quantity_value(self.memory_limit):
            raise bad("memoryRequest", f"{self.memory_request} is above memoryLimit {self.memory_limit}")
        if self.cpu_limit is not None and quantity_value(self.cpu_request) > quantity_value(self.cpu_limit):
            raise bad("cpuRequest", f"{self.cpu_request} is above cpuLimit {self.cpu_limit}")
        return self


def resources_field(cpu: str, mem: str, mem_limit: str) -> Any:
    """A `resources` field whose defaults are these requests and memory limit."""
    return Field(
        default_factory=lambda: Resources.model_validate(
            {"cpuRequest": cpu, "memoryRequest": mem, "memoryLimit": mem_limit}
        ),
        description="Requests and limits.",
    )


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(value: str) -> int:
    """A Kubernetes memory quantity in bytes ('1536Mi', '2Gi', '1e9', '512M')."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(?:e(\d+))?(Ki|Mi|Gi|Ti|k|M|G|T)?", value)
    if not m:
        raise ValueError(f"{value!r} is not a memory quantity such as '512Mi' or '2Gi'")
    number = float(m.group(1)) * (10 ** int(m.group(2)) if m.group(2) else 1)
    return int(number * _UNITS[m.group(3) or ""])
