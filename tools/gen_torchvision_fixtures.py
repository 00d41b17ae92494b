"""Fixtures for the torchvision backend (transformers 5's default image processors) and the
extra Pillow-backend cases, in tests/fixtures/processor_torchvision:

* what `ViTImageProcessor` / `CLIPImageProcessor` (backend="torchvision") and their `...Pil`
  twins make of the small crops in tests/fixtures/processor (every mode), under several
  processor configs (downscale, upscale, non-square, a centre crop that pads by an odd amount,
  rescale/normalise switched off one at a time);
* moderate crops of the nine real photos (scikit-image, scikit-learn), processed at a reduced
  size by both backends (the full-size check is tools/check_processor.py);
* torchvision's uint8 antialiased resize alone (F.interpolate as torchvision calls it) on the
  crops of tests/fixtures/pil_resize, both filters, several sizes.

Run with the reference venv:  .venv/bin/python tools/gen_torchvision_fixtures.py
The expected values are what the installed torch computes on this CPU; the script records
torch's CPU capability (AVX2/AVX512 take the same uint8 kernel) in the metadata.
"""
import json
import os

import numpy as np
import skimage
import sklearn.datasets
import torch
import torch.nn.functional as F
import torchvision  # noqa: F401  (without it transformers silently falls back to the Pil backend)
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers.image_utils import load_image
from transformers.models.clip import CLIPImageProcessor, CLIPImageProcessorPil
from transformers.models.perceiver import PerceiverImageProcessor, PerceiverImageProcessorPil
from transformers.models.vit import ViTImageProcessor, ViTImageProcessorPil

HERE = os.path.dirname(__file__)
FIX = os.path.join(HERE, "..", "tests", "fixtures")
ROOT = os.path.join(FIX, "processor_torchvision")
os.makedirs(ROOT, exist_ok=True)
assert torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"), torch.backends.cpu.get_cpu_capability()

# name -> (class pair, kwargs). The classes differ only in backend.
VIT = (ViTImageProcessor, ViTImageProcessorPil)
CLIP = (CLIPImageProcessor, CLIPImageProcessorPil)
PERCEIVER = (PerceiverImageProcessor, PerceiverImageProcessorPil)
# uint8 of the torchvision backend on every small crop
CONFIGS = {
    "vit": (VIT, dict(size={"height": 32, "width": 32}, resample=2)),
    "clip": (CLIP, dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}, resample=3)),
    # upscale on some crops (they are 50-150 px), non-square output
    "vit_up": (VIT, dict(size={"height": 64, "width": 36}, resample=2)),
    "vit_bicubic": (VIT, dict(size={"height": 33, "width": 41}, resample=3)),
    "clip_up": (CLIP, dict(size={"shortest_edge": 60}, crop_size={"height": 48, "width": 54}, resample=3)),
    # the crop is larger than the resized image by an odd amount: the backends pad differently
    "clip_pad": (CLIP, dict(size={"shortest_edge": 30}, crop_size={"height": 37, "width": 33}, resample=3)),
    "clip_bilinear": (CLIP, dict(size={"shortest_edge": 36}, crop_size={"height": 36, "width": 36}, resample=2)),
}
# ... and of the Pil backend where it was not covered before (tests/fixtures/processor)
PIL_CONFIGS = ["clip_pad"]
# float32 pixel_values (both backends) on one crop: the rescale/normalise arithmetic, with
# torch's fusion (both on) and without (one at a time)
ARITH_CONFIGS = {
    "vit": CONFIGS["vit"],
    "clip": CONFIGS["clip"],
    "vit_rescale_only": (VIT, dict(size={"height": 32, "width": 32}, resample=2, do_normalize=False)),
    "vit_normalize_only": (VIT, dict(size={"height": 32, "width": 32}, resample=2, do_rescale=False,
                                     image_mean=[120.5, 99.25, 130.0], image_std=[60.0, 70.5, 65.25])),
    "clip_odd_factor": (CLIP, dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}, resample=3,
                                   rescale_factor=0.0037)),
}
ARITH_IMAGES = ["chelsea.png"]
# The real-photo crops, both backends (reduced sizes: the same kernels as at 224, smaller
# fixtures; the full-size comparison is tools/check_processor.py).
PHOTO_CONFIGS = {
    "vit40": (VIT, dict(size={"height": 40, "width": 40}, resample=2)),
    "clip40": (CLIP, dict(size={"shortest_edge": 40}, crop_size={"height": 36, "width": 36}, resample=3)),
    # crops first, to 40/46 of the shorter side (104 of 120), then resizes bicubic
    "perceiver40": (PERCEIVER, dict(size={"height": 40, "width": 40}, crop_size={"height": 46, "width": 46})),
}


def run(proc, img):
    pv = proc(img, return_tensors="pt")["pixel_values"][0].contiguous()
    raw = proc(img, do_rescale=False, do_normalize=False, return_tensors="pt")["pixel_values"][0]
    # torchvision returns the uint8 tensor as is; Pil gives float values that are integers
    raw = raw.round().to(torch.uint8).contiguous() if raw.is_floating_point() else raw.contiguous()
    return pv.to(torch.float32), raw


def write_configs(configs):
    for name, ((tv, pil), kw) in configs.items():
        for backend, cls in [("torchvision", tv), ("pil", pil)]:
            d = cls(**kw).to_dict()
            # transformers writes the base name for both; tessera reads "...Pil" as the backend
            d["image_processor_type"] = cls.__name__
            with open(os.path.join(ROOT, f"{name}.{backend}.json"), "w") as f:
                json.dump(d, f, indent=1, default=str)


out = {}
small = os.path.join(FIX, "processor")
smalls = sorted(n for n in os.listdir(small) if n.endswith((".png", ".jpg")))
for name in smalls:
    img = load_image(os.path.join(small, name))
    for cname, ((tv, pil), kw) in CONFIGS.items():
        for backend, cls in [("torchvision", tv), ("pil", pil)]:
            if backend == "pil" and cname not in PIL_CONFIGS:
                continue
            out[f"small/{name}/{cname}/{backend}/uint8"] = run(cls(**kw), img)[1]
    if name in ARITH_IMAGES:
        for cname, ((tv, pil), kw) in ARITH_CONFIGS.items():
            for backend, cls in [("torchvision", tv), ("pil", pil)]:
                out[f"arith/{name}/{cname}/{backend}/pixel_values"] = run(cls(**kw), img)[0]

sk = os.path.join(os.path.dirname(skimage.__file__), "data")
sl = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
PHOTOS = {  # file -> (top, left) of a 160x120 (w x h) crop with detail in it
    os.path.join(sk, "chelsea.png"): (60, 100),
    os.path.join(sk, "astronaut.png"): (40, 150),
    os.path.join(sk, "coffee.png"): (100, 200),
    os.path.join(sk, "rocket.jpg"): (100, 180),
    os.path.join(sk, "motorcycle_left.png"): (150, 300),
    os.path.join(sk, "camera.png"): (60, 180),
    os.path.join(sk, "horse.png"): (50, 100),
    os.path.join(sl, "china.jpg"): (120, 260),
    os.path.join(sl, "flower.jpg"): (150, 250),
}
photo_names = []
for path, (top, left) in PHOTOS.items():
    # The crop keeps the file's own mode (camera: L, horse: RGBA), saved losslessly.
    crop = Image.open(path).crop((left, top, left + 160, top + 120))
    base = os.path.splitext(os.path.basename(path))[0]
    fname = f"photo_{base}.png"
    crop.save(os.path.join(ROOT, fname))
    photo_names.append(fname)
    img = load_image(os.path.join(ROOT, fname))
    for cname, ((tv, pil), kw) in PHOTO_CONFIGS.items():
        for backend, cls in [("torchvision", tv), ("pil", pil)]:
            _, raw = run(cls(**kw), img)
            out[f"photo/{fname}/{cname}/{backend}/uint8"] = raw

# The resize kernel alone, on tests/fixtures/pil_resize's crops (HWC uint8 there).
rs = {}
src = load_file(os.path.join(FIX, "pil_resize", "resize.safetensors"))
for name in ["chelsea_rgb", "camera_l"]:
    a = src[f"{name}/src"]
    chw = a.permute(2, 0, 1) if a.ndim == 3 else a[None]
    for mode in ["bilinear", "bicubic"]:
        for (w, h) in [(24, 20), (31, 37), (97, 13), (100, 40), (40, 100), (1, 7), (300, 9), (97, 81)]:
            r = F.interpolate(chw[None].contiguous(), size=(h, w), mode=mode, antialias=True, align_corners=False)[0]
            rs[f"{name}/{mode}/{w}x{h}"] = (r.permute(1, 2, 0) if a.ndim == 3 else r[0]).contiguous()

write_configs({**CONFIGS, **ARITH_CONFIGS, **PHOTO_CONFIGS})
meta = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "small": json.dumps(smalls), "photos": json.dumps(photo_names),
        "configs": json.dumps(sorted(CONFIGS)), "pil_configs": json.dumps(PIL_CONFIGS),
        "arith_configs": json.dumps(sorted(ARITH_CONFIGS)), "arith_images": json.dumps(ARITH_IMAGES),
        "photo_configs": json.dumps(sorted(PHOTO_CONFIGS))}
save_file(out, os.path.join(ROOT, "expected.safetensors"), metadata=meta)
save_file(rs, os.path.join(ROOT, "resize.safetensors"), metadata=meta)
total = sum(os.path.getsize(os.path.join(ROOT, f)) for f in os.listdir(ROOT))
print(len(out) + len(rs), "tensors;", total, "bytes in", ROOT)
