#!/usr/bin/env bash
# The one prepared GPU check of the paper setting:
#   1. seed 0 of chapter 03 at the colab profile (the pretrained PVT-v2-b2 + EMCAD on brain_aal,
#      1,950 steps a run), through papermill, as a Colab user would run it: the presets in $PRESETS
#      (a YAML list; default all five), plus the chapter's frozen-BatchNorm last-layer run. At the
#      0.08 s an H200 step is estimated at (benchmarks/profile_hours.py) the five presets take about
#      18 min and PRESETS='[last_layer, lomix]' about 8 min, before evaluation (not measured yet);
#   2. benchmarks/gpu_check.sh (step time, memory, inference overhead, short full-profile runs).
# The ImageNet weights come from $LOMIX_WEIGHTS (a file, or a folder with pvt_v2_b2.safetensors),
# the Hugging Face cache or the internet. Without any, step 1 stops at its first cell with one line
# that says so, and step 2 still runs (it needs no weights). Everything goes to ${OUT:-outputs/gpu_session}/.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-outputs/gpu_session}"
py="${PYTHON:-python}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

start=$(date +%s)
LOMIX_HEADLESS=1 "$py" -m papermill notebooks/03_supervision_comparison.ipynb "$out/03_colab_seed0.ipynb" \
    --cwd notebooks -p PROFILE colab -y "SEEDS: [0]" \
    -y "PRESETS: ${PRESETS:-[last_layer, deep_supervision, nnunet, mutation, lomix]}" -p OUTPUT_DIR "$(pwd)/$out/colab" --log-output \
    > "$out/03_colab_seed0.log" 2>&1
status=$?
echo "chapter 03, colab profile, seed 0: exit $status in $(( $(date +%s) - start )) s" | tee "$out/03_colab_seed0.txt"
# One line per run: preset, steps, training time, validation and test Dice (from the run records).
"$py" - "$out/colab/runs" <<'EOF' | tee -a "$out/03_colab_seed0.txt"
import json, sys
from pathlib import Path
for record in sorted(Path(sys.argv[1]).glob("*/record.json")):
    r = json.loads(record.read_text())
    m, c = r["metrics"], r["config"]
    print(f"{c['supervision']:>16} seed {c['seed']}: {m['steps']} steps in {m['train_time_s']:.0f} s "
          f"({m['train_time_s'] / m['steps']:.3f} s/step incl. validation), val Dice {m['val_dice']}, "
          f"test Dice {m['test_dice']:.4f}, on {r['environment']['device_name']}")
EOF
tail -n 5 "$out/03_colab_seed0.log"

OUT="$out/gpu_check" PYTHON="$py" bash benchmarks/gpu_check.sh
