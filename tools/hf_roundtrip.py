"""Round trip: a checkpoint tessera saved loads in transformers and predicts the same top-1.

Usage: .venv/bin/python tools/hf_roundtrip.py CHECKPOINT_DIR IMAGE... (runs target/release/tessera)
"""
import json
import subprocess
import sys

import torch
from transformers import ViTForImageClassification
from transformers.image_utils import load_image
from transformers.models.vit import ViTImageProcessorPil

ckpt, images = sys.argv[1], sys.argv[2:]
model = ViTForImageClassification.from_pretrained(ckpt).eval()
proc = ViTImageProcessorPil.from_pretrained(ckpt)
ours = json.loads(subprocess.check_output(["target/release/tessera", "predict", "--json", "--top-k", "1", "--model", ckpt, *images]))
agree, worst = 0, 0.0
for img_path, o in zip(images, ours):
    with torch.no_grad():
        probs = model(**proc(load_image(img_path), return_tensors="pt")).logits.softmax(-1)[0]
    top = int(probs.argmax())
    label = model.config.id2label[top]
    same = label == o["predictions"][0]["label"]
    agree += same
    worst = max(worst, abs(float(probs[top]) - o["predictions"][0]["score"]))
    print(f"{img_path}: HF {label} {float(probs[top]):.5f} | tessera {o['predictions'][0]['label']} {o['predictions'][0]['score']:.5f}")
print(f"top-1 agreement {agree}/{len(images)}, max top-1 probability difference {worst:.2e}")
sys.exit(0 if agree == len(images) else 1)
