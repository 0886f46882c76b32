#!/usr/bin/env bash
# Offline diff of every stack file against a base ref, as one markdown document on stdout.
# Needs no cloud credentials. Exits 3 (after printing everything) if any stack has a destructive change.
set -uo pipefail
base=${1:?usage: offline-diff.sh BASE_REF}
cd "$(dirname "$0")/../.."
py=${PYTHON:-python}
status=0
echo "## Offline diff against \`$base\`"
echo
echo "Rendered with \`python -m stacks.render STACK --diff-against $base\` (no cloud credentials; secrets masked)."
for file in stacks/Pulumi.*.yaml; do
  stack=${file#stacks/Pulumi.}; stack=${stack%.yaml}
  out=$("$py" -m stacks.render "$stack" --diff-against "$base" 2>&1); rc=$?
  if [ $rc -eq 3 ]; then status=3; echo; echo "### :warning: \`$stack\`: DESTRUCTIVE changes"; 
  elif [ $rc -ne 0 ]; then [ $status -eq 0 ] && status=1; echo; echo "### :x: \`$stack\`: render failed";
  else echo; echo "### \`$stack\`"; fi
  echo; echo '```'; echo "$out"; echo '```'
done
exit $status
