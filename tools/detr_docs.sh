#!/usr/bin/env bash
# The DETR pictures in docs/: a trained run's detections and per-query decoder attention on
# held-out generated scenes.
#   cargo run --release -- train-detr --output runs/detr-shapes     # ~2 h on 2 Zen 4 cores (README)
#   tools/detr_docs.sh runs/detr-shapes
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/detr-shapes}
threshold=${THRESHOLD:-0.5}
cargo build --release --bin tessera >&2
bin=target/release/tessera
imgs=("$run"/data/val/images/000001.png "$run"/data/val/images/000002.png "$run"/data/val/images/000005.png)
for i in 0 1 2; do "$bin" detect --model "$run" --threshold "$threshold" --out "docs/detr_detections_$i.png" "${imgs[$i]}"; done
"$bin" explain --model "$run" --threshold "$threshold" --out docs/detr_queries.png "${imgs[0]}"
cp "$run/curves.png" docs/detr_curves.png
