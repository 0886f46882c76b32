"""Offline render: run the real program for a stack file under recording mocks, and write it.

    python -m stacks.render STACK --out DIR [--set KEY=VALUE ...] [--reveal-secrets]

Writes DIR/resources.json (every resource: urn, type, name, parent, dependencies, provider,
options, inputs with secrets as "[secret]"), DIR/manifests/ (each Kubernetes object as YAML,
masked the same way) and prints the resource tree. No cloud credentials or Pulumi CLI needed.
`--set airflow.executor=KubernetesExecutor` overrides a stack-file value (the value is read as
YAML, so `true`, `3` and `{...}` work). `--reveal-secrets` shows the mock values (for tests).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from stacks.config import PROJECT, ConfigError
from stacks.tooling import ROOT, engine
from stacks.tooling.clouds.facts import mock_secret

STACKS_DIR = ROOT / "stacks"


class RenderError(Exception):
    """A render that could not run: bad config, unknown stack, bad --set."""


class _StrictLoader(yaml.SafeLoader):
    """YAML as the Pulumi CLI reads a stack file: a key given twice is an error, not last-wins."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in first:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {first[key]})", key_node.start_mark
            )
        first[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)  # type: ignore[arg-type]


def read_yaml(text: str, where: str) -> Any:
    """Parse YAML strictly; a syntax error or a duplicate key is a RenderError naming `where` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f", line {mark.line + 1}" if mark is not None else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise RenderError(f"{where}{line}: not valid YAML: {what}") from None
    except yaml.YAMLError as e:
        raise RenderError(f"{where}: not valid YAML: {e}") from None


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def stack_names() -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def _mock_secure(top: str, leaf: str) -> str:
    """The stand-in for a `secure:` value that cannot be decrypted here. A value the config checks
    by its shape gets a mock of that shape (a real, throwaway-looking key would fail nothing)."""
    if leaf == "privateKey":
        body = mock_secret(f"config:{top}.{leaf}", 64).replace("$", "A").replace("@", "B").replace("%", "C")
        body = body.replace(":", "D")
        return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    return mock_secret(f"config:{top}")


def load_stack_config(
    stack: str, overrides: Sequence[str] = (), secret_overrides: Sequence[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """The stack file's config as the Pulumi CLI would pass it: one JSON string per key, and the
    keys Pulumi marks secret (a structured key is secret when any value inside it is).

    `secure:` values cannot be decrypted here; they become a mock secret and stay secret.
    `secret_overrides` are set like `overrides`, as `pulumi config set --secret --path` would.
    """
    path = STACKS_DIR / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise RenderError(f"no stack file {path.name} in stacks/ (have: {', '.join(stack_names())})")
    where = f"stacks/{path.name}"
    doc = read_yaml(path.read_text(), where)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RenderError(f"{where}: a stack file is a mapping with a 'config:' key, not a {_kind(doc)}")
    config_block = doc.get("config") or {}
    if not isinstance(config_block, dict):
        raise RenderError(f"{where}: 'config:' must be a mapping of keys to values, not a {_kind(config_block)}")
    values: dict[str, Any] = copy.deepcopy(config_block)
    secret_keys: set[str] = set()

    def unsecure(key: str, v: Any, leaf: str) -> Any:
        if isinstance(v, dict) and set(v) == {"secure"}:
            secret_keys.add(key)
            return _mock_secure(key, leaf)
        if isinstance(v, dict):
            return {k: unsecure(key, x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [unsecure(key, x, leaf) for x in v]
        return v

    for item, secret in [(o, False) for o in overrides] + [(o, True) for o in secret_overrides]:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RenderError(f"--set {item!r}: expected KEY=VALUE, e.g. airflow.executor=KubernetesExecutor")
        if ":" not in key.split(".")[0]:
            key = f"{PROJECT}:{key}"
        top, *path = key.split(".")
        if secret:
            secret_keys.add(top)
        value = (raw if secret else read_yaml(raw, f"--set {key}")) if raw else ""
        if not path:
            values[top] = value
            continue
        node = values.setdefault(top, {})
        if not isinstance(node, dict):
            raise RenderError(f"--set {item!r}: {top} is not an object")
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise RenderError(f"--set {item!r}: {p} is not an object")
        node[path[-1]] = value
    # After the overrides, so `--set 'airflow.auth.sso.clientSecret={secure: ...}'` is a secret too.
    values = {k: unsecure(k, v, k) for k, v in values.items()}
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    return config, sorted(secret_keys)


def run_stack(stack: str, overrides: Sequence[str] = (), secret_overrides: Sequence[str] = ()) -> engine.Run:
    """Render a stack file; raises RenderError (with the config message) on bad input."""
    from stacks.main import program

    config, secret_keys = load_stack_config(stack, overrides, secret_overrides)
    run = engine.run(program, config=config, secret_keys=secret_keys, stack=stack)
    if run.error is not None:
        raise RenderError(_message(run.error)) from None
    return run


def _message(err: BaseException) -> str:
    if isinstance(err, (ConfigError,)) or type(err).__name__ == "RunError":
        return str(err)
    return f"{type(err).__name__}: {err}"


def manifest_filename(index: int, obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or "_cluster"
    return f"{index:03d}-{obj.get('kind', 'Object').lower()}-{ns}-{meta.get('name', 'unnamed')}.yaml"


_TOP = ("apiVersion", "kind", "metadata", "spec", "type", "data", "stringData")


def ordered(obj: Any, top: bool = True) -> Any:
    """Stable key order for reviewable files: the usual manifest head first, the rest sorted
    (the engine's protobuf maps come back in no useful order)."""
    if isinstance(obj, dict):
        head = [k for k in _TOP if k in obj] if top else []
        keys = head + sorted(k for k in obj if k not in head)
        if not top and "name" in obj:
            keys = ["name"] + [k for k in keys if k != "name"]
        return {k: ordered(obj[k], top=False) for k in keys}
    if isinstance(obj, list):
        return [ordered(x, top=False) for x in obj]
    return obj


def write(run: engine.Run, out: Path, reveal: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "resources": [{**r.to_json(), "inputs": r.manifest(reveal)} for r in run.resources],
        "outputs": run.revealed_outputs if reveal else run.outputs,
    }
    (out / "resources.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    mdir = out / "manifests"
    mdir.mkdir(exist_ok=True)
    for old in mdir.glob("*.yaml"):
        old.unlink()
    written = []
    for i, r in enumerate(run.kubernetes()):
        obj = r.manifest(reveal)
        p = mdir / manifest_filename(i, obj)
        p.write_text(yaml.safe_dump(ordered(obj), sort_keys=False))
        written.append(p)
    return written


def tree(run: engine.Run) -> str:
    children: dict[str | None, list[engine.Resource]] = {}
    urns = {r.urn for r in run.resources}
    for r in run.resources:
        parent = r.parent if r.parent in urns else None
        children.setdefault(parent, []).append(r)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            lines.append(f"{'  ' * depth}{r.type}  {r.name}")
            walk(r.urn, depth + 1)

    walk(None, 0)
    return "\n".join(lines)
