"""Processor parity on the full-size real photos (scikit-image / scikit-learn wheels):
tessera's ViT and CLIP processors vs transformers' Pillow backend, uint8 before normalisation.

  .venv/bin/python tools/check_processor.py
"""
import os
import subprocess
import tempfile

import numpy as np
import skimage
import sklearn.datasets
from safetensors.numpy import load_file
from transformers.image_utils import load_image
from transformers.models.clip import CLIPImageProcessorPil
from transformers.models.vit import ViTImageProcessorPil

sk = os.path.join(os.path.dirname(skimage.__file__), "data")
sl = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
photos = [os.path.join(sk, f) for f in ["chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg", "camera.png",
                                         "horse.png", "motorcycle_left.png"]] + [os.path.join(sl, "china.jpg"), os.path.join(sl, "flower.jpg")]
tmp = tempfile.mkdtemp()
procs = {"vit": ViTImageProcessorPil(size={"height": 224, "width": 224}, resample=2),
         "clip": CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3)}
tot_eq = tot = 0
worst = 0
for name, proc in procs.items():
    cfg = os.path.join(tmp, f"{name}.json")
    proc.to_json_file(cfg)
    out = os.path.join(tmp, f"{name}.safetensors")
    subprocess.check_call(["cargo", "run", "-q", "--release", "--example", "preprocess", "--", cfg, out, *photos])
    ours = load_file(out)
    for p in photos:
        ref = proc(load_image(p), do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][0]
        ref = np.round(ref).astype(np.int32)
        got = ours[p].astype(np.int32)
        d = np.abs(ref - got)
        eq = int((d == 0).sum())
        tot_eq += eq
        tot += d.size
        worst = max(worst, int(d.max()))
        print(f"{name:4} {os.path.basename(p):20} {eq / d.size:.5f} equal, max level diff {d.max()}, within 1: {(d <= 1).mean():.5f}")
print(f"all: {tot_eq}/{tot} = {tot_eq / tot:.5f} exactly equal, max level diff {worst}")
