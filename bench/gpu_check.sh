#!/usr/bin/env bash
# The GPU path in one go: the quick test (config/quick_test.yaml) trained with the unsloth backend and
# with the peft backend in bf16 on one CUDA GPU, then again with the base model loaded in 4-bit
# (model.load_in_4bit: QLoRA), each final checkpoint evaluated; prints per phase the training tokens/s,
# the trainer's last eval_loss and the evaluation's numbers.
#
#   bash bench/gpu_check.sh                 # after `make install`, on a machine with an NVIDIA GPU
#   LIMIT=64 bash bench/gpu_check.sh        # evaluate 64 test rows instead of 32
#   WEIGHTS=bf16 bash bench/gpu_check.sh    # leave the 4-bit phases out
#
# Everything goes to a fresh runs root (UMLSTUDIO_HOME, a temp folder unless set), so the user's runs
# and store are untouched. Exits 2 at once, with one line, where no CUDA GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
LIMIT=${LIMIT:-32}
BACKENDS=${BACKENDS:-"unsloth peft"}
WEIGHTS=${WEIGHTS:-"bf16 4bit"}

if [ ! -x "$PY" ]; then
    echo "error: $PY not found — run make install first (or set PY=/path/to/python)" >&2
    exit 2
fi
if ! GPU=$("$PY" -c 'import torch, sys
if not torch.cuda.is_available():
    sys.exit(1)
print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}")' 2>/dev/null); then
    echo "error: no CUDA GPU visible (torch.cuda.is_available() is False) — run this on a machine with an NVIDIA GPU and its driver" >&2
    exit 2
fi

export UMLSTUDIO_HOME=${UMLSTUDIO_HOME:-$(mktemp -d "${TMPDIR:-/tmp}/umlstudio-gpu-check.XXXXXX")}
echo "GPU: $GPU"
echo "runs root: $UMLSTUDIO_HOME"
"$PY" -m core prepare-model

PHASES=""
for backend in $BACKENDS; do
    for weights in $WEIGHTS; do
        phase="${backend}_$weights"
        four_bit=$([ "$weights" = 4bit ] && echo true || echo false)
        echo "=== quick test, backend $backend, bf16, base weights $weights (model.load_in_4bit: $four_bit)"
        start=$(date +%s)
        "$PY" -m core train --config config/quick_test.yaml \
            --set training.backend="$backend" --set model.dtype=bfloat16 --set model.load_in_4bit="$four_bit" \
            --set training.output_dir="gpu_check_$phase" --set run_name="gpu-check-$phase"
        echo "train wall time ($phase): $(( $(date +%s) - start )) s"
        "$PY" -m core evaluate --checkpoint "$UMLSTUDIO_HOME/gpu_check_$phase" --limit "$LIMIT" --json \
            > "$UMLSTUDIO_HOME/evaluate_$phase.json"
        PHASES="$PHASES $phase"
    done
done

"$PY" -m core runs --json > "$UMLSTUDIO_HOME/runs.json"
"$PY" - "$UMLSTUDIO_HOME" $PHASES <<'EOF'
import json, sys
from pathlib import Path

home, phases = Path(sys.argv[1]), sys.argv[2:]
runs = {r["name"]: r for r in json.loads((home / "runs.json").read_text())}
def num(value, spec):
    return "-" if value is None else format(value, spec)
print(f"\n{'phase':<14}{'status':>10}{'steps':>7}{'tokens/s':>10}{'eval_loss':>11}{'eval(gen)':>11}{'valid':>8}{'renders':>9}")
for phase in phases:
    run = runs[f"gpu-check-{phase}"]
    summary = json.loads((home / f"evaluate_{phase}.json").read_text())
    summary = summary.get("summary", summary)
    print(f"{phase:<14}{run['status']:>10}{run['steps']:>7}{num(run['tokens_per_s'], '.0f'):>10}"
          f"{num(run['eval_loss'], '.4f'):>11}{num(summary.get('loss'), '.4f'):>11}"
          f"{num(summary.get('syntax_valid_rate'), '.0%'):>8}{num(summary.get('render_rate'), '.0%'):>9}")
EOF
