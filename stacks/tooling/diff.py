"""Offline diff of a stack between a git ref and the working tree: what would this change do?

    python -m stacks.render STACK --diff-against REF [--allow-destructive]

Renders the stack at REF (in a temporary git worktree, with this same Python) and in the working
tree, and reports per resource: created, deleted, changed (the changed fields; secrets stay masked,
so a changed secret value is not visible) and renamed (a changed URN: Pulumi replaces it unless an
alias names the old URN). Changes that would replace or delete a stateful resource are flagged and
make the command exit 3 unless --allow-destructive is given. Which types are stateful, and which
fields replace them, each cloud's facts say (stacks/tooling/clouds/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.tooling import ROOT
from stacks.tooling.clouds import facts_for


def stateful_fields(type_token: str) -> tuple[str, ...] | None:
    """For a type whose loss loses data or identity, the input fields whose change replaces it
    (each cloud's facts list them); None for any other type."""
    facts = facts_for(type_token)
    return facts.stateful.get(type_token) if facts is not None else None


def _stateful(type_token: str) -> bool:
    return stateful_fields(type_token) is not None


@dataclass
class Change:
    kind: str  # created | deleted | changed | renamed
    urn: str
    type: str
    fields: list[str] = field(default_factory=list)
    old_urn: str | None = None
    destructive: str | None = None  # why, when it would delete or replace a stateful resource


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf paths: `spec.template.spec.containers[scheduler].image`; list items by name when named."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            key = v.get("name") if isinstance(v, dict) and isinstance(v.get("name"), str) else i
            out.update(_flatten(v, f"{prefix}[{key}]"))
        return out
    return {prefix: obj}


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    # An empty mapping is no field at all (not a field named "").
    a, b = _flatten(old) if old else {}, _flatten(new) if new else {}
    return sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))


def _covers(key: str, f: str) -> bool:
    return f == key or f.startswith(key + ".") or f.startswith(key + "[")


def _replacing(type_: str, fields: list[str], ignored: list[str]) -> list[str]:
    """Changed fields that replace a stateful resource, unless the program tells Pulumi to ignore them."""
    keys = stateful_fields(type_) or ()
    return [f for f in fields if any(_covers(k, f) for k in keys) and not any(_covers(i, f) for i in ignored)]


def _identity(r: dict[str, Any]) -> str:
    """What stays the same when only the URN moves (a rename or re-parent)."""
    return json.dumps({"type": r["type"], "inputs": r["inputs"]}, sort_keys=True)


def _replace_in(obj: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(obj, str):
        for new_value, old_value in pairs:
            obj = obj.replace(new_value, old_value)
        return obj
    if isinstance(obj, dict):
        return {k: _replace_in(v, pairs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_in(v, pairs) for v in obj]
    return obj


def carry_ignored(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new render as an existing stack would get it: an input under `ignoreChanges` keeps its
    value from state, and so does whatever the provider derives from it (a resource group's name,
    say); an input that depends on that resource then sees the old value too. The render models a
    new stack, so without this every child of a renamed-for-new-stacks group looked replaced. (The
    ignored input itself is left as rendered: the diff lists it, marked as kept from state.)

    Only string values are carried, and only one step: into the properties whose recorded property
    dependencies name the resource itself. A further step would be a guess (the server named like the
    group is not derived from it), so a value derived twice over still shows as a change.
    """
    before = {r["urn"]: r for r in old}
    out = [json.loads(json.dumps(r)) for r in new]
    pairs: dict[str, list[tuple[str, str]]] = {}
    for r in out:
        o = before.get(r["urn"])
        if o is None:
            continue
        for path in r.get("options", {}).get("ignoreChanges", []):
            a, b = _flatten({path: _get(o["inputs"], path)}), _flatten({path: _get(r["inputs"], path)})
            for k, value in b.items():
                if a.get(k) != value:
                    if isinstance(value, str) and isinstance(a.get(k), str) and value:
                        pairs.setdefault(r["urn"], []).append((value, a[k]))
    for r in out:
        for prop, deps in (r.get("propertyDependencies") or {}).items():
            carried = sorted({p for d in deps if d != r["urn"] for p in pairs.get(d, ())})
            # A pair whose new value is part of its old one would not be undone by replacing it.
            carried = [(n, o) for n, o in carried if n not in o]
            if carried and prop in r["inputs"]:
                r["inputs"][prop] = _replace_in(r["inputs"][prop], carried)
    return out


def _get(obj: Any, path: str) -> Any:
    for p in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def _engine_urn(urn: str) -> str:
    """A URN as the Pulumi engine writes it: the root stack's type is not part of a child's type
    chain (pkg/resource/urn.go, NewURN), while the SDK's mocks put it there. An alias made with
    `pulumi.create_urn(name, type)` for a resource that was at the root names the engine's form."""
    return urn.replace("::pulumi:pulumi:Stack$", "::", 1)


def compare(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Change]:
    """Resource-level changes between two renders (`resources.json` entries)."""
    new = carry_ignored(old, new)
    before = {r["urn"]: r for r in old}
    after = {r["urn"]: r for r in new}
    changes: list[Change] = []
    gone = {u: r for u, r in before.items() if u not in after}
    came = {u: r for u, r in after.items() if u not in before}
    # A new URN that lists a vanished one as an alias is a move Pulumi tracks: not a change by
    # itself, but what changed in its inputs on the way is an update (or a replacement) all the same.
    for u, r in list(came.items()):
        aliases = json.dumps(r.get("options", {}).get("aliases", []))
        moved = [g for g in gone if g in aliases or _engine_urn(g) in aliases]
        if moved:
            came.pop(u)
            old_r = gone.pop(moved[0])
            fields = changed_fields(old_r["inputs"], r["inputs"])
            if fields:
                replacing = _replacing(r["type"], fields, r.get("options", {}).get("ignoreChanges", []))
                changes.append(
                    Change(
                        "changed",
                        u,
                        r["type"],
                        fields,
                        old_urn=moved[0],
                        destructive=f"replaced: {', '.join(replacing)} changed" if replacing else None,
                    )
                )
    by_identity = {_identity(r): u for u, r in gone.items()}
    for u, r in sorted(came.items()):
        old_urn = by_identity.get(_identity(r))
        if old_urn is None:  # same type and name under a new parent also counts as a rename
            old_urn = next((g for g, o in gone.items() if o["type"] == r["type"] and o["name"] == r["name"]), None)
        if old_urn is not None and old_urn in gone:
            gone.pop(old_urn)
            why = "a changed URN is a replacement" if _stateful(r["type"]) else None
            changes.append(
                Change(
                    "renamed",
                    u,
                    r["type"],
                    changed_fields(before[old_urn]["inputs"], r["inputs"]),
                    old_urn=old_urn,
                    destructive=why,
                )
            )
        else:
            changes.append(Change("created", u, r["type"]))
    for u, r in sorted(gone.items()):
        changes.append(Change("deleted", u, r["type"], destructive="deleted" if _stateful(r["type"]) else None))
    for u in sorted(set(before) & set(after)):
        fields = changed_fields(before[u]["inputs"], after[u]["inputs"])
        opts = changed_fields(before[u].get("options", {}), after[u].get("options", {}))
        if fields or opts:
            ignored = after[u].get("options", {}).get("ignoreChanges", [])
            replacing = _replacing(before[u]["type"], fields, ignored)
            shown = [
                f"{f} (ignoreChanges: an existing stack keeps its value)" if any(_covers(i, f) for i in ignored) else f
                for f in fields
            ]
            changes.append(
                Change(
                    "changed",
                    u,
                    before[u]["type"],
                    shown + [f"options.{o}" for o in opts],
                    destructive=f"replaced: {', '.join(replacing)} changed" if replacing else None,
                )
            )
    return changes


def render_json(stack: str, cwd: Path, overrides: list[str]) -> list[dict[str, Any]]:
    """Render `stack` from the checkout at `cwd` with this Python; return its resources."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "stacks.render", stack, "--out", out]
        for o in overrides:
            cmd += ["--set", o]
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"render of {stack} in {cwd} failed:\n{done.stderr.strip()[-2000:]}")
        return json.loads((Path(out) / "resources.json").read_text())["resources"]


def at_ref(stack: str, ref: str, overrides: list[str]) -> list[dict[str, Any]]:
    """Render `stack` as it is at git `ref` (a detached worktree, removed afterwards)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        add = subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), ref], cwd=ROOT, capture_output=True, text=True
        )
        if add.returncode != 0:
            raise RuntimeError(f"cannot check out {ref!r}: {add.stderr.strip()}")
        try:
            if not (tree / "stacks" / f"Pulumi.{stack}.yaml").exists():
                return []  # the stack is new in this change
            return render_json(stack, tree, overrides)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)


def format_changes(stack: str, ref: str, changes: list[Change]) -> str:
    if not changes:
        return f"{stack}: no changes against {ref}"
    short = lambda u: u.split("::", 2)[-1]  # noqa: E731 - drop the stack and project
    lines = [f"{stack}: {len(changes)} change(s) against {ref}"]
    for c in sorted(changes, key=lambda c: ("deleted", "renamed", "changed", "created").index(c.kind)):
        mark = {"created": "+", "deleted": "-", "changed": "~", "renamed": ">"}[c.kind]
        line = f"  {mark} {c.kind:8} {short(c.urn)}"
        if c.old_urn and c.kind == "changed":
            line += f"  (moved from {short(c.old_urn)} by an alias: updated in place)"
        elif c.old_urn:
            line += f"  (was {short(c.old_urn)}; Pulumi replaces it unless an alias names the old URN)"
        lines.append(line)
        for f in c.fields[:12]:
            lines.append(f"        {f}")
        if len(c.fields) > 12:
            lines.append(f"        ... {len(c.fields) - 12} more")
        if c.destructive:
            lines.append(f"      !!! DESTRUCTIVE ({c.destructive}): data or identity would be lost")
    return "\n".join(lines)
