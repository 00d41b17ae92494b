"""PyTorch side of benches/clip_embed.rs: CLIP ViT-B/32 random init, batch 8, same thread count."""
import json
import os
import statistics
import time

import torch
from transformers import CLIPConfig, CLIPModel

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
reps = int(os.environ.get("BENCH_STEPS", "5"))
torch.manual_seed(0)
m = CLIPModel(CLIPConfig()).eval()
b = 8
px = torch.randn(b, 3, 224, 224)


def ids(t):
    x = torch.tensor([[400 + (i * 31 + j * 7) % 40000 for j in range(t)] for i in range(b)])
    x[:, 0] = 49406
    x[:, -1] = 49407
    return x


def bench(f):
    with torch.no_grad():
        f()
        ts = []
        for _ in range(reps):
            s = time.perf_counter()
            f()
            ts.append(time.perf_counter() - s)
    return statistics.median(ts)


i77, i16 = ids(77), ids(16)
ti = bench(lambda: m.get_image_features(pixel_values=px))
t77 = bench(lambda: m.get_text_features(input_ids=i77))
t16 = bench(lambda: m.get_text_features(input_ids=i16))
print(json.dumps({"image_per_s": b / ti, "text77_per_s": b / t77, "text16_per_s": b / t16}))
