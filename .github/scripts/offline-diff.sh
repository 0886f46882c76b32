#!/usr/bin/env bash
# Offline diff of every stack file (or of the STACKs named) against a base ref, as one markdown
# document on stdout, with each stack's estimated `pulumi up` time on the base and now, so a
# deploy-time regression shows in the pull request. Needs no cloud credentials.
# Exits 3 (after printing everything) if any stack has a destructive change.
set -uo pipefail
base=${1:?usage: offline-diff.sh BASE_REF [STACK ...]}
shift
cd "$(dirname "$0")/../.."
py=${PYTHON:-python}
status=0
stacks=("$@")
if [ ${#stacks[@]} -eq 0 ]; then
  for file in stacks/Pulumi.*.yaml; do stack=${file#stacks/Pulumi.}; stacks+=("${stack%.yaml}"); done
fi
# The base's own tooling estimates the base (a ref older than the report says "n/a").
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/base" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
git worktree add -q --detach "$tmp/base" "$base" >/dev/null 2>&1 || { echo "cannot check out $base" >&2; exit 2; }
estimate() {  # DIR STACK -> "21.1 min", or "n/a"
  local line
  line=$(cd "$1" && "$py" -m stacks.render "$2" --critical-path 2>/dev/null | head -1)
  case $line in
    "estimated \`pulumi up\`"*) echo "${line#*: }" | cut -d' ' -f1,2 ;;
    *) echo "n/a" ;;
  esac
}
echo "## Offline diff against \`$base\`"
echo
echo "Rendered with \`python -m stacks.render STACK --diff-against $base\` (no cloud credentials; secrets masked);"
echo "deploy time from \`--critical-path\` (typical creation times, not measured)."
for stack in "${stacks[@]}"; do
  out=$("$py" -m stacks.render "$stack" --diff-against "$base" 2>&1); rc=$?
  if [ $rc -eq 3 ]; then status=3; echo; echo "### :warning: \`$stack\`: DESTRUCTIVE changes";
  elif [ $rc -ne 0 ]; then [ $status -eq 0 ] && status=1; echo; echo "### :x: \`$stack\`: render failed";
  else echo; echo "### \`$stack\`"; fi
  now=$(estimate . "$stack"); was=$(estimate "$tmp/base" "$stack")
  slower=""
  if [ "$now" != n/a ] && [ "$was" != n/a ] && awk -v a="${now% min}" -v b="${was% min}" 'BEGIN { exit !(a > b * 1.05) }'; then
    slower=" :hourglass: more than 5% slower"
  fi
  echo; echo "Estimated \`pulumi up\` of a new stack: $now (base: $was)$slower"
  echo; echo '```'; echo "$out"; echo '```'
done
exit $status
