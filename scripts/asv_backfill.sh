#!/usr/bin/env bash
# Backfill the ASV history with the last N commits of a branch, offline, in the existing environment.
#
#   scripts/asv_backfill.sh [N] [REV] [asv run options...]
#
# N defaults to 10, REV to HEAD; commits are taken along first parents, oldest first. Each commit is
# checked out into its own temporary git worktree and recorded by scripts/asv_record.sh, which puts
# that worktree first on the benchmarks' path (ASV_PYTHONPATH), so today's benchmark files measure
# that commit's hwmodel, pytest_dojo and dojo_networks with today's interpreter and dependencies.
# Benchmarks whose network or API a commit lacks are recorded as skipped. Nothing is installed or
# built; the worktrees are removed afterwards. A commit that already has results for this machine
# is skipped unless ASV_DOJO_BACKFILL_REDO=1. Same environment variables as scripts/asv_record.sh.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

count="${1:-10}"
[[ $# -gt 0 ]] && shift
rev="${1:-HEAD}"
[[ $# -gt 0 ]] && shift
if ! [[ "$count" =~ ^[1-9][0-9]*$ ]]; then
    echo "asv_backfill: N must be a positive integer, got '$count'" >&2
    exit 2
fi

machine="${ASV_DOJO_MACHINE:-dojo-ci}"
results_dir="${ASV_DOJO_RESULTS:-$repo_root/.asv/results}"
mapfile -t commits < <(git rev-list --first-parent --max-count="$count" --reverse "$rev")
worktrees="$(mktemp -d -t dojo-asv-backfill.XXXXXX)"
cleanup() {
    for tree in "$worktrees"/*; do
        [[ -d "$tree" ]] && git worktree remove --force "$tree" >/dev/null 2>&1 || true
    done
    rm -rf "$worktrees"
    git worktree prune
}
trap cleanup EXIT

total=${#commits[@]}
index=0
failed=0
start=$SECONDS
for commit in "${commits[@]}"; do
    index=$((index + 1))
    subject="$(git log -1 --format=%s "$commit" | cut -c1-60)"
    if [[ "${ASV_DOJO_BACKFILL_REDO:-0}" != 1 ]] && compgen -G "$results_dir/$machine/${commit:0:8}-*.json" >/dev/null; then
        echo "asv_backfill: [$index/$total] ${commit:0:8} $subject: already recorded, skipped" >&2
        continue
    fi
    echo "asv_backfill: [$index/$total] ${commit:0:8} $subject ($((SECONDS - start)) s so far)" >&2
    tree="$worktrees/${commit:0:12}"
    git worktree add --detach --quiet "$tree" "$commit"
    if ! ASV_DOJO_CHECKOUT="$tree" "$repo_root/scripts/asv_record.sh" "$commit" "$@"; then
        echo "asv_backfill: [$index/$total] ${commit:0:8}: asv run failed" >&2
        failed=$((failed + 1))
    fi
    git worktree remove --force "$tree"
done
echo "asv_backfill: $total commits in $((SECONDS - start)) s, $failed failed; results in $results_dir/$machine" >&2
[[ $failed -eq 0 ]]
