#!/usr/bin/env bash
# Side-by-side training-step benchmark: tessera and PyTorch on this machine, in the same run.
# Needs the reference venv (tools/setup_reference.sh). Usage: tools/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
threads=$(nproc)
echo "threads: $threads" >&2
ours=$(RAYON_NUM_THREADS=$threads cargo bench --bench train_step 2>/dev/null | tail -n 1)
theirs=$(BENCH_THREADS=$threads "$PY" tools/bench_train_step.py | tail -n 1)
clip_ours=$(cargo bench --bench clip_embed 2>/dev/null | tail -n 1)
clip_theirs=$(BENCH_THREADS=$threads "$PY" tools/bench_clip.py 2>/dev/null | tail -n 1)
"$PY" - "$ours" "$theirs" "$clip_ours" "$clip_theirs" <<'PYEOF'
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'workload':28} {'tessera':>12} {'PyTorch':>12} {'ratio':>7} {'tessera % of matmul ceiling':>28}")
print(f"{'seed ViT train step, b64':28} {o['images_per_s']:>8.1f} img/s {t['images_per_s']:>8.1f} img/s "
      f"{o['images_per_s'] / t['images_per_s']:>6.2f}x {100 * o['achieved_gflops'] / o['matmul_2048_gflops']:>10.1f}% "
      f"of {o['matmul_2048_gflops']:.0f} GFLOP/s")
print(f"{'matmul 2048^3 fp32':28} {o['matmul_2048_gflops']:>6.0f} GFLOP/s {t['matmul_2048_gflops']:>6.0f} GFLOP/s "
      f"{o['matmul_2048_gflops'] / t['matmul_2048_gflops']:>6.2f}x")
co, ct = json.loads(sys.argv[3]), json.loads(sys.argv[4])
for k, name, unit in [("image_per_s", "CLIP B/32 image embed, b8", "img/s"), ("text77_per_s", "CLIP text embed, b8, 77 tok", "txt/s"),
                      ("text16_per_s", "CLIP text embed, b8, 16 tok", "txt/s")]:
    print(f"{name:28} {co[k]:>8.1f} {unit} {ct[k]:>8.1f} {unit} {co[k] / ct[k]:>6.2f}x")
print(f"(ratio = tessera / PyTorch throughput; PyTorch {t['torch']}, {t['threads']} threads; "
      f"{o['gflops_per_step']:.1f} GFLOP per step by tessera's analytic count)")
PYEOF
