#!/usr/bin/env bash
# buf breaking: fail when protos/ (as it is in the working tree) breaks the wire or generated
# code compatibility of an earlier commit (rules: `breaking` in protos/buf.yaml).
#
# The commit compared against, first that applies:
#   1. $BUF_AGAINST, any git revision (e.g. BUF_AGAINST=main~3 to check a whole series);
#   2. the merge base with origin/main when HEAD is not origin/main (a branch under review);
#   3. HEAD when protos/ has uncommitted changes (what you are about to commit);
#   4. HEAD~1: in CI's fresh clone of main, the commit before the newest one.
# When that commit does not exist (first commit, shallow clone) or has no protos/buf.yaml, it
# says so and exits 0: there is nothing to be compatible with. Exit 1 on a breaking change,
# 2 when buf or git is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
buf="${BUF:-.venv/bin/buf}"

if ! command -v "$buf" >/dev/null 2>&1; then
  echo "buf_breaking: $buf not found; run \`make venv\` (buf comes with the dev extras) or set BUF" >&2
  exit 2
fi
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "buf_breaking: $(pwd) is not a git checkout; nothing to compare against" >&2
  exit 2
fi

head=$(git rev-parse --verify --quiet 'HEAD^{commit}' || true)
if [ -n "${BUF_AGAINST:-}" ]; then
  against="$BUF_AGAINST"
elif upstream=$(git rev-parse --verify --quiet 'refs/remotes/origin/main^{commit}') && [ "$upstream" != "$head" ]; then
  against=$(git merge-base HEAD "$upstream")
elif [ -n "$head" ] && [ -n "$(git status --porcelain -- protos)" ]; then
  against=HEAD
else
  against=HEAD~1
fi

if ! base=$(git rev-parse --verify --quiet "${against}^{commit}"); then
  echo "buf_breaking: skipped: no commit ${against} in this clone (first commit or shallow clone)"
  exit 0
fi
if ! git cat-file -e "${base}:protos/buf.yaml" 2>/dev/null; then
  echo "buf_breaking: skipped: ${against} (${base:0:12}) has no protos/buf.yaml"
  exit 0
fi

# NOTE: the common git dir (not .git) so this also works in a linked worktree, and the full
# commit id (not "HEAD~1") because buf fetches the revision from a clone of that repository.
git_dir=$(cd "$(git rev-parse --git-common-dir)" && pwd)
if ! "$buf" breaking protos --against "${git_dir}#ref=${base},subdir=protos"; then
  echo "buf_breaking: protos/ breaks compatibility with ${against} (${base:0:12}); make the change additive" >&2
  exit 1
fi
echo "buf_breaking: protos/ is compatible with ${against} (${base:0:12})"
