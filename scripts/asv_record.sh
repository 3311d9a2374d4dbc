#!/usr/bin/env bash
# Record the ASV benchmarks of one commit into the history, offline, without building anything.
#
#   scripts/asv_record.sh [COMMIT] [asv run options...]
#
# COMMIT defaults to HEAD. The project under test is the checkout at ASV_DOJO_CHECKOUT (default: the
# repository root, which must then be at COMMIT); the benchmarks import it from ASV_PYTHONPATH.
# Runs `asv run -E existing:<python> --set-commit-hash <sha>` (without --set-commit-hash asv saves
# nothing) under a fixed machine name, through a fixed interpreter path, so that records from any
# clone or CI runner land in one history: asv keys results by machine and environment name, and the
# environment name of an existing interpreter is its path.
#
# Environment:
#   ASV_DOJO_MACHINE   machine name in the history (default: dojo-ci)
#   ASV_DOJO_PYTHON    interpreter with the project's dependencies (default: .venv/bin/python, else python3)
#   ASV_DOJO_ASV_PYTHON interpreter that runs asv itself (default: ASV_DOJO_PYTHON)
#   ASV_DOJO_CHECKOUT  checkout of COMMIT to benchmark (default: the repository root)
#   ASV_DOJO_RESULTS   results directory (default: results_dir of asv.conf.json, .asv/results)
#   ASV_DOJO_WRAPPER_DIR where the fixed-path interpreter wrapper lives (default: /tmp/pytest-dojo-asv)
# Extra arguments go to `asv run` (e.g. --quick, --bench REGEX, --show-stderr).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

commit_ref="${1:-HEAD}"
[[ $# -gt 0 ]] && shift
machine="${ASV_DOJO_MACHINE:-dojo-ci}"
checkout="$(cd "${ASV_DOJO_CHECKOUT:-$repo_root}" && pwd)"
commit="$(git rev-parse --verify "${commit_ref}^{commit}")"

if [[ -n "${ASV_DOJO_PYTHON:-}" ]]; then
    python="$ASV_DOJO_PYTHON"
elif [[ -x "$repo_root/.venv/bin/python" ]]; then
    python="$repo_root/.venv/bin/python"
else
    python="$(command -v python3)"
fi
asv_python="${ASV_DOJO_ASV_PYTHON:-$python}"
"$asv_python" -c 'import asv' 2>/dev/null || { echo "asv_record: asv is not installed for $asv_python (pip install -e '.[history]')" >&2; exit 2; }

checkout_commit="$(git -C "$checkout" rev-parse HEAD)"
if [[ "$checkout_commit" != "$commit" ]]; then
    echo "asv_record: $checkout is at ${checkout_commit:0:8}, not at ${commit:0:8}; set ASV_DOJO_CHECKOUT to a checkout of it" >&2
    exit 2
fi
if ! git -C "$checkout" diff --quiet HEAD -- hwmodel pytest_dojo suites ":(exclude)suites/benchmarks"; then
    echo "asv_record: warning: $checkout has uncommitted changes in hwmodel/, pytest_dojo/ or suites/;" \
        "they are recorded as ${commit:0:8}" >&2
fi

# A fixed interpreter path: asv names an existing environment after the interpreter's path, and a
# different name would start a separate history. The wrapper runs the real interpreter.
wrapper_dir="${ASV_DOJO_WRAPPER_DIR:-/tmp/pytest-dojo-asv}"
wrapper="$wrapper_dir/python"
mkdir -p "$wrapper_dir"
real_python="$("$python" -c 'import sys; print(sys.executable)')"
printf '#!/bin/sh\nexec %q "$@"\n' "$real_python" > "$wrapper.tmp"
chmod +x "$wrapper.tmp"
mv "$wrapper.tmp" "$wrapper"

# The graphs are keyed by every field of the machine description, so only fields that change what
# the wall-clock figures mean (architecture, CPU model) are recorded; the rest are fixed.
cpu_model="$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo 2>/dev/null | head -n 1)"
"$asv_python" -m asv machine --yes --machine "$machine" --os Linux --arch "$(uname -m)" \
    --cpu "${cpu_model:-unknown}" --num_cpu 0 --ram 0 >/dev/null

results_args=()
if [[ -n "${ASV_DOJO_RESULTS:-}" ]]; then
    # `asv run` has no results-dir option: point a copy of the configuration at it.
    config="$(mktemp --suffix=.asv.conf.json)"
    trap 'rm -f "$config"' EXIT
    "$asv_python" - "$repo_root/asv.conf.json" "$config" "$ASV_DOJO_RESULTS" "$repo_root" <<'EOF'
import json, os, re, sys
source, target, results, root = sys.argv[1:]
text = "\n".join(line for line in open(source, encoding="utf-8").read().splitlines() if not re.match(r"\s*//", line))
conf = json.loads(text)
conf["repo"] = root
conf["benchmark_dir"] = os.path.join(root, conf["benchmark_dir"])
conf["env_dir"] = os.path.join(root, conf["env_dir"])
conf["results_dir"] = os.path.abspath(results)
conf["html_dir"] = os.path.join(os.path.abspath(results), "..", "html")
json.dump(conf, open(target, "w", encoding="utf-8"), indent=2)
EOF
    results_args=(--config "$config")
fi

echo "asv_record: ${commit:0:8} ($(git log -1 --format=%s "$commit" | cut -c1-60)) from $checkout on machine $machine" >&2
ASV_PYTHONPATH="$checkout" "$asv_python" -m asv run "${results_args[@]}" -E "existing:$wrapper" \
    --set-commit-hash "$commit" --machine "$machine" "$@"
