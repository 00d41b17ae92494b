"""Image-processor fixtures: small crops of the scikit-image / scikit-learn photos in every
mode HF meets (RGB, grey, RGBA, 16-bit grey, JPEG, EXIF-rotated) and what transformers'
Pillow-backend ViT and CLIP processors make of them.

Run with the reference venv:  .venv/bin/python tools/gen_processor_fixtures.py
"""
import json
import os

import numpy as np
import skimage.data
import sklearn.datasets
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers.image_utils import load_image
from transformers.models.clip import CLIPImageProcessorPil
from transformers.models.vit import ViTImageProcessorPil

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "processor")
os.makedirs(ROOT, exist_ok=True)

files = {}
files["chelsea.png"] = Image.fromarray(skimage.data.chelsea()[40:160, 80:230])            # RGB 150x120
files["camera_grey.png"] = Image.fromarray(skimage.data.camera()[100:190, 200:270])      # L 70x90
horse = (skimage.data.horse()[::4, ::4].astype(np.uint8) * 255)
files["horse_rgba.png"] = Image.fromarray(np.stack([horse, horse // 2, 255 - horse, (horse // 3) + 80], -1).astype(np.uint8))
files["camera_16bit.png"] = Image.fromarray(skimage.data.camera()[0:60, 0:50].astype(np.uint16) * 3)
files["rocket.jpg"] = Image.fromarray(skimage.data.rocket()[100:220, 200:300])
china = sklearn.datasets.load_sample_image("china.jpg")[100:196, 300:428]
files["china.jpg"] = Image.fromarray(china)
for name, img in files.items():
    path = os.path.join(ROOT, name)
    if name.endswith(".jpg"):
        img.save(path, quality=90)
    else:
        img.save(path)
# EXIF orientation 6 (rotate 90 clockwise to display)
exif = Image.Exif()
exif[0x0112] = 6
Image.fromarray(skimage.data.coffee()[50:130, 100:160]).save(os.path.join(ROOT, "coffee_exif6.jpg"), exif=exif, quality=90)

vit = ViTImageProcessorPil(size={"height": 32, "width": 32}, resample=2)
clip = CLIPImageProcessorPil(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}, resample=3)
out = {}
for name in sorted(os.listdir(ROOT)):
    if not name.endswith((".png", ".jpg")):
        continue
    img = load_image(os.path.join(ROOT, name))  # exif_transpose + convert("RGB"), as pipelines do
    for pname, proc in [("vit", vit), ("clip", clip)]:
        pv = proc(img, return_tensors="pt")["pixel_values"][0]
        raw = proc(img, do_rescale=False, do_normalize=False, return_tensors="pt")["pixel_values"][0]
        out[f"{name}/{pname}/pixel_values"] = pv.contiguous()
        out[f"{name}/{pname}/uint8"] = raw.round().to(torch.uint8).contiguous()
save_file(out, os.path.join(ROOT, "expected.safetensors"))
# transformers' to_dict drops the "Pil" suffix (and AutoImageProcessor would load the
# torchvision backend whatever the file says); tessera reads the suffix as the backend, so the
# fixtures name the class that made them.
for name, proc in [("vit", vit), ("clip", clip)]:
    d = proc.to_dict()
    d["image_processor_type"] = type(proc).__name__
    with open(os.path.join(ROOT, f"{name}_preprocessor_config.json"), "w") as f:
        json.dump(d, f, indent=1, default=str)
print(sorted(os.listdir(ROOT)))
