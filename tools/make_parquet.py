"""Writes an image-classification set as the HF hub stores it: parquet files with an `image`
struct column (`bytes`, `path`) and a `label` ClassLabel, class names in the schema metadata,
split by file name (`data/train-*.parquet`, `data/test-*.parquet`).

  .venv/bin/python tools/make_parquet.py digits OUT_DIR     # scikit-learn digits, 28x28 PNGs
  .venv/bin/python tools/make_parquet.py fixture OUT_DIR    # a 24-image test fixture
"""
import io
import os
import sys

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image as HFImage
from PIL import Image
from sklearn.datasets import load_digits

kind, out = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "data"), exist_ok=True)
if kind == "digits":
    d = load_digits()
    images = [Image.fromarray((x * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BICUBIC) for x in d.images]
    labels = d.target.tolist()
    names = [str(i) for i in range(10)]
else:
    rng = np.random.default_rng(0)
    images, labels = [], []
    for k in range(24):
        c = k % 2
        a = (rng.random((20, 24, 3)) * 60).astype(np.uint8)
        a[..., 0 if c else 2] += 180
        images.append(Image.fromarray(a))
        labels.append(c)
    names = ["blue_things", "red_things"]
feats = Features({"image": HFImage(), "label": ClassLabel(names=names)})
ds = Dataset.from_dict({"image": images, "label": labels}, features=feats)
split = ds.train_test_split(test_size=0.25, stratify_by_column="label", seed=0)
for name, part in split.items():
    part.to_parquet(os.path.join(out, "data", f"{name}-00000-of-00001.parquet"))
    print(name, len(part), "rows")
