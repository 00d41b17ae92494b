#!/usr/bin/env bash
# Installs the Python reference (PyTorch CPU + transformers; ONNX Runtime and OpenVINO) into the git-ignored .venv.
# Only needed to regenerate fixtures (tools/gen_fixtures.py) and for benchmarks (tools/bench.sh);
# `cargo test` never needs it. PyPI's torch pulls several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch transformers safetensors numpy pillow scikit-learn scikit-image open-clip-torch
# transformers' default image-processor backend; without it the processor fixtures silently
# come from the Pillow backend. Pinned without deps: PyPI's newest torchvision may trail torch
# by one release, and its transforms (all the fixtures use) are pure Python over torch's ops.
.venv/bin/pip install -q --no-deps torchvision
.venv/bin/python -c "import torchvision.transforms.v2.functional as F"
# The other runtimes tools/bench.sh compares with (tools/bench_onnx.py exports with onnx);
# timm: DETR-R50's default backbone; scipy, pycocotools: the detection fixtures.
.venv/bin/pip install -q onnx onnxruntime openvino timm scipy pycocotools
.venv/bin/python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
