#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU, its driver and PyTorch (CUDA 13) in the
# Python environment, and no Rust toolchain: given the gpu_check binary of a CUDA build made on
# a CPU machine, it prints
#   1. parity, GPU against CPU (seed ViT, HF ViT, CLIP: fp32 ≤ 1e-3 with TF32 off, bf16 top-1;
#      one training step's loss and weights), and NCCL with world size 1;
#   2. a throughput table against PyTorch on the same GPU, same run.
# Build it here first (about 20 minutes on 2 cores, most of it candle's CUDA kernels):
#   tools/setup_cuda.sh example          # → target/cuda/gpu_check.xz (what the GPU machine gets)
# then, on the GPU machine, from the repository root:
#   tools/gpu_check.sh [target/cuda/gpu_check.xz]
# The CUDA libraries tessera links (cuBLAS, cuRAND, NVRTC, NCCL) come from PyTorch's nvidia-*
# wheels; the driver's libcuda from the system.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bin=${1:-target/cuda/gpu_check.xz}
work=$(mktemp -d)
if [[ $bin == *.xz ]]; then
  "$PY" -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as src, open(sys.argv[2], "wb") as dst: shutil.copyfileobj(src, dst)' "$bin" "$work/gpu_check"
  bin=$work/gpu_check
fi
chmod +x "$bin"
libs=$("$PY" - <<'PYEOF'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "*", "lib"))})))
PYEOF
)
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
missing=$(ldd "$bin" | grep "not found" || true)
if [ -n "$missing" ]; then
  echo "missing libraries: $missing" >&2
  exit 2
fi
status=0
echo "== parity (GPU vs CPU) and NCCL"
timeout 240 "$bin" parity || status=$?
echo "== throughput (items/s, same GPU, same run)"
: >"$work/rows.jsonl"
for w in vit_b16_b64_bf16 vit_b16_finetune_b64 clip_image_b256_bf16 seed_vit_train_b512; do
  timeout 120 "$bin" bench "$w" >>"$work/rows.jsonl" || echo "tessera $w failed" >&2
  timeout 120 "$PY" tools/gpu_bench_torch.py "$w" >>"$work/rows.jsonl" || echo "pytorch $w failed" >&2
done
"$PY" - "$work/rows.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault(r["workload"], {})[r["impl"]] = r["items_per_s"]
print(f"| workload | tessera | PyTorch | tessera / PyTorch |")
print("|---|---|---|---|")
for w, v in by.items():
    t, p = v.get("tessera"), v.get("pytorch")
    ratio = f"{t / p:.2f}x" if t and p else "-"
    fmt = lambda x: f"{x:.1f}" if x else "-"
    print(f"| {w} | {fmt(t)} | {fmt(p)} | {ratio} |")
PYEOF
rm -rf "$work"
exit $status
