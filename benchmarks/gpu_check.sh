#!/usr/bin/env bash
# The prepared GPU measurements, in one go (about 8 minutes on one H100/H200):
#   1. step time, loss time and memory per preset at the paper setting: fp32, bf16 autocast, and
#      fp32 with the loss through torch.compile;
#   2. inference overhead of pvt_v2_b2_emcad at 224²;
#   3. the full profile (pvt_v2_b2_emcad, 224², the official protocol in fp32) trained for 200 steps with each preset.
# Tables go to stdout and, with their JSON, to ${OUT:-outputs/gpu_check}/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-outputs/gpu_check}"
mkdir -p "$out"
py="${PYTHON:-python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
paper=(--model pvt_v2_b2_emcad --in-channels 3 --device cuda --batch 6 --size 224 --classes 9 --steps 20 --warmup 5)
"$py" benchmarks/step_time.py "${paper[@]}" --official --json "$out/step_time_fp32.json" | tee "$out/step_time_fp32.md"
"$py" benchmarks/step_time.py "${paper[@]}" --amp --json "$out/step_time_bf16.json" | tee "$out/step_time_bf16.md"
"$py" benchmarks/step_time.py "${paper[@]}" --compile --json "$out/step_time_fp32_compiled.json" | tee "$out/step_time_fp32_compiled.md"
"$py" benchmarks/inference_overhead.py --model pvt_v2_b2_emcad --in-channels 3 --device cuda --size 224 | tee "$out/inference.md"
"$py" benchmarks/full_profile_steps.py --steps 200 --out-dir "$out/runs" | tee "$out/full_profile_steps.md"
