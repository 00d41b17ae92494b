"""Pillow resize fixtures: small crops of the scikit-image photos and Pillow's outputs.

Run with the reference venv:  .venv/bin/python tools/gen_pil_fixtures.py
"""
import os

import numpy as np
import skimage.data
import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "pil_resize")
os.makedirs(ROOT, exist_ok=True)
crops = {
    "chelsea_rgb": np.ascontiguousarray(skimage.data.chelsea()[60:140, 100:197]),   # 97x80 RGB
    "camera_l": np.ascontiguousarray(skimage.data.camera()[100:171, 200:263]),      # 63x71 grey
}
sizes = [(24, 20), (31, 37), (128, 96), (97, 13), (100, 40), (40, 100)]
out = {}
for name, arr in crops.items():
    out[f"{name}/src"] = torch.from_numpy(arr.copy())
    img = Image.fromarray(arr)
    for f in [0, 1, 2, 3, 4, 5]:
        for (w, h) in sizes:
            r = np.asarray(img.resize((w, h), resample=f))
            out[f"{name}/{f}/{w}x{h}"] = torch.from_numpy(r.copy())
save_file(out, os.path.join(ROOT, "resize.safetensors"))
print(len(out), "tensors,", os.path.getsize(os.path.join(ROOT, "resize.safetensors")), "bytes")
