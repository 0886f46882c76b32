"""This test suite's reading of prometheus/statsd_exporter v0.30.0's mapping semantics, to check a
rendered mapping file against the metric names Airflow sends. It is not the exporter: no build of it
installs here (Debian has no package; PyPI's `statsd-exporter` is an unrelated Python client), so
this follows the exporter's README ("Metric Mapping and Configuration") and pkg/mapper at v0.30.0:

- a line is `name[,tag=value...]:value|type[|@rate]`; InfluxDB-style tags after the name become
  labels (pkg/line; --statsd.parse-influxdb-tags is on by default); `c` is a counter, `g` a gauge,
  `ms`, `h` and `d` an observer;
- glob rules (the default `match_type`) split the name at `.`; `*` stands for exactly one whole
  component; with ordering on (the default), the first matching rule in the file wins; rules with a
  `match_metric_type` match only that type (fsm.go keeps one tree per type);
- regex rules run only when no glob rule matched, in file order, with an unanchored search
  (mapper.go `FindStringSubmatchIndex`); `$n`/`${n}` in the name and labels expand to groups;
- the validation regexes are mapper.go's (metricLineRE, metricNameRE, labelNameRE);
- mapping labels win over tags of the same name (no `honor_labels` here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

STATSD_METRIC = r"[a-zA-Z_]([a-zA-Z0-9_\-])*"
STATSD_METRIC_SUBSEQUENT = r"[a-zA-Z0-9_]([a-zA-Z0-9_\-])*"
TEMPLATE = r"(\$\{?\d+\}?)"
METRIC_LINE = re.compile(rf"^(\*|{STATSD_METRIC})(\.\*|\.{STATSD_METRIC_SUBSEQUENT})*$")
METRIC_NAME = re.compile(rf"^([a-zA-Z_]|{TEMPLATE})([a-zA-Z0-9_]|{TEMPLATE})*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
TYPES = {"c": "counter", "g": "gauge", "ms": "observer", "h": "observer", "d": "observer"}
RULE_KEYS = {"match", "match_type", "match_metric_type", "name", "labels", "action", "help", "ttl", "observer_type"}


@dataclass(frozen=True)
class Event:
    name: str
    type: str  # counter | gauge | observer
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mapped:
    rule: int  # index in `mappings`
    action: str  # map | drop
    name: str
    labels: dict[str, str]


def parse_line(line: str) -> Event:
    """One statsd line as the exporter's line parser reads it (InfluxDB tags only: Airflow's)."""
    head, _, rest = line.partition(":")
    kind = rest.split("|")[1]
    name, *tags = head.split(",")
    return Event(name, TYPES[kind], dict(t.split("=", 1) for t in tags))


def _expand(template: str, groups: list[str]) -> str:
    # `${n}` or `$n` (the longest run of digits), n counting from 1.
    return re.sub(r"\$\{(\d+)\}|\$(\d+)", lambda m: groups[int(m.group(1) or m.group(2)) - 1], template)


class Mapping:
    def __init__(self, text: str) -> None:
        doc = yaml.safe_load(text)
        self.defaults: dict[str, Any] = doc.get("defaults", {})
        self.rules: list[dict[str, Any]] = doc["mappings"]
        self.problems = list(self._check())

    def _check(self) -> list[str]:
        out = []
        for i, r in enumerate(self.rules):
            if set(r) - RULE_KEYS:
                out.append(f"rule {i}: keys {sorted(set(r) - RULE_KEYS)} are not used here")
            if r.get("match_type", "glob") == "glob" and not METRIC_LINE.match(r["match"]):
                out.append(f"rule {i}: invalid match {r['match']!r}")
            if r.get("match_type", "glob") == "regex":
                re.compile(r["match"])
            if not METRIC_NAME.match(r.get("name", "")):
                out.append(f"rule {i}: metric name {r.get('name')!r}")
            out += [f"rule {i}: invalid label key {k!r}" for k in r.get("labels", {}) if not LABEL_NAME.match(k)]
            if r.get("match_metric_type", "counter") not in ("counter", "gauge", "observer"):
                out.append(f"rule {i}: match_metric_type {r['match_metric_type']!r}")
            if r.get("action", "map") not in ("map", "drop"):
                out.append(f"rule {i}: action {r['action']!r}")
        return out

    def _result(self, i: int, groups: list[str], event: Event) -> Mapped:
        r = self.rules[i]
        labels = {**event.tags, **{k: _expand(v, groups) for k, v in r.get("labels", {}).items()}}
        return Mapped(i, r.get("action", "map"), _expand(r["name"], groups), labels)

    def match(self, event: Event) -> Mapped | None:
        parts = event.name.split(".")
        for i, r in enumerate(self.rules):
            if r.get("match_type", "glob") != "glob" or r.get("match_metric_type", event.type) != event.type:
                continue
            pattern = r["match"].split(".")
            if len(pattern) == len(parts) and all(p in ("*", q) for p, q in zip(pattern, parts, strict=True)):
                return self._result(i, [q for p, q in zip(pattern, parts, strict=True) if p == "*"], event)
        for i, r in enumerate(self.rules):
            if r.get("match_type") != "regex":
                continue
            m = re.search(r["match"], event.name)
            if m is None or r.get("match_metric_type", event.type) != event.type:
                continue
            return self._result(i, [g or "" for g in m.groups()], event)
        return None
