#!/usr/bin/env bash
# Prints the paths of the real photos used by the parity and accuracy checks (from the
# scikit-image and scikit-learn wheels in the reference venv, tools/setup_reference.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-.venv/bin/python}" - <<'PYEOF'
import os, skimage, sklearn.datasets
sk = os.path.join(os.path.dirname(skimage.__file__), "data")
sl = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
for f in ["chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg", "camera.png", "horse.png", "motorcycle_left.png"]:
    print(os.path.join(sk, f))
for f in ["china.jpg", "flower.jpg"]:
    print(os.path.join(sl, f))
PYEOF
