"""Offline render: run the real program for a stack file under recording mocks, and review it.

    python -m stacks.render STACK [--out DIR] [--set KEY=VALUE ...] [--set-secret KEY=VALUE ...] [--reveal-secrets]
    python -m stacks.render STACK --diff-against REF [--allow-destructive]
    python -m stacks.render STACK --teardown
    python -m stacks.render STACK --graph [--out DIR]
    python -m stacks.render STACK --critical-path  # estimated `pulumi up` time: longest and forced chain
    python -m stacks.render --config-reference     # print the README's config reference
    python -m stacks.render --write-readme         # regenerate the README's generated sections

Exit status: 2 for bad config, an unknown stack, a bad --set or a ref that cannot be checked out;
3 for a destructive diff without --allow-destructive; 1 when something blocks a teardown or the
README lacks a generated section's markers; 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stacks.tooling import README, configdoc, critpath, graph
from stacks.tooling.diff import at_ref, compare, format_changes
from stacks.tooling.render import RenderError, run_stack, stack_names, tree, write
from stacks.tooling.teardown import findings, report


def write_readme() -> int:
    """Replace every generated section of README.md, or none when one's markers are missing."""
    text = README.read_text()
    sections = [(configdoc.BEGIN, configdoc.current_readme_section(text), configdoc.reference())]
    for stack in graph.README_STACKS.values():
        sections.append(
            (graph.begin_marker(stack), graph.current_block(text, stack), graph.readme_block(stack, run_stack(stack)))
        )
    for marker, old, new in sections:
        if not old:
            print(f"README.md has no {marker!r} marker", file=sys.stderr)
            return 1
        text = text.replace(old, new)
    README.write_text(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stacks.render", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("stack", nargs="?", help=f"stack file to render (one of: {', '.join(stack_names())})")
    ap.add_argument("--out", type=Path, help="directory for resources.json and manifests/")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. airflow.executor=KubernetesExecutor",
    )
    ap.add_argument(
        "--set-secret",
        dest="secret_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="like --set, as `pulumi config set --secret --path` would (the value as given, not YAML)",
    )
    ap.add_argument("--reveal-secrets", action="store_true", help="write mock secret values (tests only)")
    ap.add_argument(
        "--diff-against",
        metavar="REF",
        help="render the stack at git REF too and print what "
        "changes (exit 3 on a destructive change unless --allow-destructive)",
    )
    ap.add_argument("--allow-destructive", action="store_true", help="with --diff-against: exit 0 anyway")
    ap.add_argument(
        "--teardown",
        action="store_true",
        help="print what `pulumi destroy` would remove, in "
        "order, and what could block it or leave something behind (exit 1 if anything blocks)",
    )
    ap.add_argument(
        "--graph",
        action="store_true",
        help="print a mermaid diagram of the stack's pieces "
        "and their dependencies (and write DIR/graph.mmd with --out)",
    )
    ap.add_argument(
        "--critical-path",
        action="store_true",
        help="print the estimated time of `pulumi up` of a new stack: its longest chain of creations, the "
        "chain the cloud forces, and when each data service starts",
    )
    ap.add_argument(
        "--config-reference", action="store_true", help="print the README's config reference (takes no STACK)"
    )
    ap.add_argument(
        "--write-readme",
        action="store_true",
        help="regenerate the README's config reference and its resource graph of each cloud (takes no STACK)",
    )
    args = ap.parse_args(argv)
    if args.config_reference or args.write_readme:
        if args.stack is not None:
            ap.error(f"{'--write-readme' if args.write_readme else '--config-reference'} takes no STACK")
        if args.write_readme:
            return write_readme()
        print(configdoc.reference())
        return 0
    if args.stack is None:
        ap.error("the following arguments are required: stack")
    if args.secret_overrides and args.diff_against:
        ap.error("--set-secret cannot be used with --diff-against (the other ref would not get the secret)")
    try:
        run = run_stack(args.stack, args.overrides, args.secret_overrides)
    except RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for message in run.warnings:  # `pulumi preview` shows these as warnings too
        print(f"warning: {message}", file=sys.stderr)
    if args.diff_against:
        try:
            old = at_ref(args.stack, args.diff_against, args.overrides)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        new = [{**r.to_json()} for r in run.resources]
        changes = compare(old, new)
        print(format_changes(args.stack, args.diff_against, changes))
        destructive = [c for c in changes if c.destructive]
        if destructive and not args.allow_destructive:
            print(
                f"\n{len(destructive)} destructive change(s): review them, then pass --allow-destructive",
                file=sys.stderr,
            )
            return 3
        return 0
    if args.teardown:
        print(report(run))
        return 1 if any(f.severity == "blocks" for f in findings(run)) else 0
    if args.graph:
        picture = graph.mermaid(run)
        print(picture)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "graph.mmd").write_text(picture + "\n")
        return 0
    if args.critical_path:
        print(critpath.summary(run))
        return 0
    print(tree(run))
    if args.out:
        files = write(run, args.out, reveal=args.reveal_secrets)
        print(f"\n{len(run.resources)} resources, {len(files)} Kubernetes manifests written to {args.out}")
    print(next_steps(args.stack, args.out, args.reveal_secrets))
    return 0


def next_steps(stack: str, out: Path | None, revealed: bool) -> str:
    """What a newcomer can do after a render: it deployed nothing, so no `pulumi stack output` yet."""
    cmd = f"python -m stacks.render {stack}"
    where = (
        f'the stack\'s outputs, as `pulumi stack output` would list them: "outputs" in {out / "resources.json"}'
        if out
        else f"the stack's outputs and every manifest: {cmd} --out out/{stack}"
    )
    secrets = (
        "mock secret values are shown (--reveal-secrets): never for real stacks"
        if revealed
        else 'secrets are masked as "[secret]" everywhere in a render'
    )
    return "\n".join(
        [
            "",
            "Nothing was deployed: this is the program run under Pulumi mocks. Next:",
            f"  - {where};",
            f"  - the picture: {cmd} --graph; what `pulumi destroy` would do: {cmd} --teardown;",
            f"  - the estimated first `pulumi up`: {cmd} --critical-path; a change's effect: {cmd} --diff-against main;",
            f"  - {secrets};",
            f"  - to deploy: `pulumi up -s {stack}` (the Pulumi CLI and credentials for the target).",
        ]
    )
