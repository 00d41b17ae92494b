#!/usr/bin/env bash
# Build tessera's CUDA build on a machine without a GPU or a CUDA install.
#
# candle's CUDA backend needs nvcc (its kernels are compiled to PTX at build time) and, to link,
# the CUDA libraries it binds (cuBLAS, cuBLASLt, cuRAND, NVRTC, the driver). PyPI ships all of
# them except the driver as NVIDIA's wheels; this script unpacks them into the git-ignored `.cuda/`
# and makes a link-time stub of the driver library (`libcuda.so.1`, every `cu*` entry point
# declared in cuda.h), which the real driver replaces at run time.
#
# nvcc is pinned to CUDA 13.0: the GPU machine we target runs driver 580 (CUDA 13.0), which
# cannot JIT PTX written by a newer nvcc. CUDA_COMPUTE_CAP defaults to 90 (H100/H200).
#
#   tools/setup_cuda.sh            # install the toolchain only
#   tools/setup_cuda.sh check      # + cargo check --release --features nccl --all-targets (CI)
#   tools/setup_cuda.sh build      # + the CUDA tessera binary (target/cuda/release/tessera)
#   tools/setup_cuda.sh example    # + target/cuda/gpu_check.xz, for tools/gpu_check.sh
#
# Then, in a shell: `source tools/setup_cuda.sh env` sets PATH/CUDA_HOME/CUDA_COMPUTE_CAP.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cuda="$root/.cuda"
top="$cuda/nvidia/cu13"
export CUDA_HOME="$top" CUDA_PATH="$top" CUDA_ROOT="$top"
export PATH="$top/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$top/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
if [ "${1:-}" = env ]; then
  return 0 2>/dev/null || exit 0
fi

# What nvcc needs to compile candle's kernels (all `check` needs), then what the linker needs.
compile_wheels=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-runtime==13.0.96"
  "nvidia-cuda-cccl==13.0.85"
)
link_wheels=(
  "nvidia-cuda-nvrtc==13.0.88"
  "nvidia-cublas==13.0.2.14"
  "nvidia-curand==10.4.5.25"
  "nvidia-nccl-cu13==2.32.6"
)

# install NAME WHEEL...: unpacks the wheels into .cuda/ once (a stamp per set).
install() {
  local name=$1
  shift
  local stamp="$cuda/.installed-$name-$(printf '%s\n' "$@" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  mkdir -p "$cuda/wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: --dest "$cuda/wheels" \
    --python-version 3.11 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
    "$@"
  for w in "$cuda"/wheels/*.whl; do
    python3 -m zipfile -e "$w" "$cuda"
  done
  rm -rf "$cuda/wheels"
  # nccl's wheel has its own tree; the linker and headers want it with the rest.
  if [ -d "$cuda/nvidia/nccl" ]; then
    cp -an "$cuda/nvidia/nccl/." "$top/"
  fi
  chmod +x "$top"/bin/* "$top"/nvvm/bin/* 2>/dev/null || true
  # Unversioned names for `-l…`.
  (
    cd "$top/lib"
    for so in lib*.so.[0-9]*; do
      base="${so%%.so.*}.so"
      [ -e "$base" ] || ln -s "$so" "$base"
    done
  )
  touch "$stamp"
}

install compile "${compile_wheels[@]}"
if [ ! -f "$top/lib/libcuda.so" ]; then
  # The driver's link stub: every cu* function cuda.h names (candle links with
  # `dynamic-linking`, so the loader binds the real libcuda.so.1 at run time).
  grep -oh '\bcu[A-Z][A-Za-z0-9_]*\b' "$top/include/cuda.h" | sort -u |
    awk '{print "void " $1 "(void) {}"}' >"$cuda/cuda_stub.c"
  cc -shared -fPIC -o "$top/lib/libcuda.so" -Wl,-soname,libcuda.so.1 "$cuda/cuda_stub.c"
fi
case "${1:-}" in
  build | example) install link "${link_wheels[@]}" ;;
esac
"$top/bin/nvcc" --version | tail -1

cd "$root"
# Its own target directory: the CUDA build does not overwrite the CPU one's binaries.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/cuda}"
case "${1:-}" in
  check)
    # Type-checks every target with CUDA and NCCL (what CI runs). Nothing here runs the
    # static kernels candle compiles to SASS, so ptxas may skip optimising them.
    NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:--Xptxas -O0}" \
      cargo check --release --features nccl --all-targets ;;
  build) cargo build --release --features nccl --bin tessera ;;
  example)
    # The GPU check's one binary, stripped and xz-compressed for the GPU machine.
    cargo build --release --features nccl --example gpu_check
    strip -o "$CARGO_TARGET_DIR/gpu_check" "$CARGO_TARGET_DIR/release/examples/gpu_check"
    xz -T0 -6 -f "$CARGO_TARGET_DIR/gpu_check"
    ls -la "$CARGO_TARGET_DIR/gpu_check.xz" ;;
  "") ;;
  *) echo "usage: tools/setup_cuda.sh [check|build|example|env]" >&2; exit 2 ;;
esac
