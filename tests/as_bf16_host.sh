#!/usr/bin/env bash
# Run a command as on a CPU with native bf16 (AMX / AVX512-BF16): the command sees /proc/cpuinfo with
# those flags added, so `model.dtype: auto` picks bfloat16 as it does on a recent Xeon; torch then
# emulates bf16 (correct, ~20x slower than fp32). Only the command sees it (a private mount
# namespace: needs root or unprivileged user namespaces). Example, the suite without the slow tests:
#   tests/as_bf16_host.sh .venv/bin/python -m pytest -m "not slow"
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: tests/as_bf16_host.sh COMMAND [ARGS...]" >&2; exit 2; }
flags=$(mktemp)
trap 'rm -f "$flags"' EXIT
sed -E 's/^(flags[[:space:]]*:.*)$/\1 amx_bf16 avx512_bf16/' /proc/cpuinfo > "$flags"
as=(--mount)  # root: a mount namespace; a user without root: a user namespace as well
unshare --mount true 2>/dev/null || as=(--mount --map-root-user)
unshare "${as[@]}" bash -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' "$flags" "$@"
