"""Processor parity on the full-size real photos (scikit-image / scikit-learn wheels): tessera's
ViT (224x224 bilinear) and CLIP (shortest edge 224 bicubic + 224 crop) processors vs
transformers, uint8 before normalisation, for both backends: torchvision (transformers 5's
default, `ViTImageProcessor`) and Pil (`ViTImageProcessorPil`). Also prints how far the two HF
backends are from each other, for scale.

  .venv/bin/python tools/check_processor.py            # exit status 1 unless all equal
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import skimage
import sklearn.datasets
import torch
from safetensors.numpy import load_file
from transformers.image_utils import load_image
from transformers.models.clip import CLIPImageProcessor, CLIPImageProcessorPil
from transformers.models.vit import ViTImageProcessor, ViTImageProcessorPil

sk = os.path.join(os.path.dirname(skimage.__file__), "data")
sl = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
photos = [os.path.join(sk, f) for f in ["chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg", "camera.png",
                                         "horse.png", "motorcycle_left.png"]] + [os.path.join(sl, "china.jpg"), os.path.join(sl, "flower.jpg")]
tmp = tempfile.mkdtemp()
vit = dict(size={"height": 224, "width": 224}, resample=2)
clip = dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3)
procs = {("vit", "torchvision"): ViTImageProcessor(**vit), ("vit", "pil"): ViTImageProcessorPil(**vit),
         ("clip", "torchvision"): CLIPImageProcessor(**clip), ("clip", "pil"): CLIPImageProcessorPil(**clip)}
print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")


def hf_uint8(proc, path):
    ref = proc(load_image(path), do_rescale=False, do_normalize=False, return_tensors="pt")["pixel_values"][0]
    return ref.numpy().astype(np.int32) if not ref.is_floating_point() else np.round(ref.numpy()).astype(np.int32)


ok = True
refs = {}
for (name, backend), proc in procs.items():
    cfg = os.path.join(tmp, f"{name}_{backend}.json")
    d = proc.to_dict()
    # transformers' to_dict writes the base class name for both backends (and its
    # AutoImageProcessor picks torchvision regardless); tessera reads "...Pil" as the Pil backend.
    d["image_processor_type"] = type(proc).__name__
    with open(cfg, "w") as f:
        json.dump(d, f)
    out = os.path.join(tmp, f"{name}_{backend}.safetensors")
    subprocess.check_call(["cargo", "run", "-q", "--release", "--example", "preprocess", "--", cfg, out, *photos])
    ours = load_file(out)
    tot_eq = tot = worst = 0
    for p in photos:
        ref = refs[(name, backend, p)] = hf_uint8(proc, p)
        got = ours[p].astype(np.int32)
        assert got.shape == ref.shape, (p, got.shape, ref.shape)
        dd = np.abs(ref - got)
        tot_eq += int((dd == 0).sum())
        tot += dd.size
        worst = max(worst, int(dd.max()))
        print(f"{name:4} {backend:11} {os.path.basename(p):20} {(dd == 0).mean():.6f} equal, max level diff {dd.max()}")
    print(f"{name:4} {backend:11} all: {tot_eq}/{tot} = {tot_eq / tot:.6f} exactly equal, max level diff {worst}")
    ok &= tot_eq == tot
for name in ["vit", "clip"]:
    for p in photos:
        dd = np.abs(refs[(name, "torchvision", p)] - refs[(name, "pil", p)])
        print(f"HF torchvision vs HF pil, {name:4} {os.path.basename(p):20} {(dd == 0).mean():.6f} equal, max level diff {dd.max()}")
sys.exit(0 if ok else 1)
