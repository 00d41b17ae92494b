"""PyTorch side of the training-step benchmark (same model, batch, optimizer, thread count)."""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from seed_vit import VisionTransformer  # noqa: E402

threads = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
steps = int(os.environ.get("BENCH_STEPS", "10"))
torch.set_num_threads(threads)
torch.manual_seed(0)
model = VisionTransformer(img_size=32, patch_size=4, in_channels=3, num_classes=10, embed_dim=192, depth=6,
                          num_heads=3, mlp_dim=768, dropout=0.1)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.randn(64, 3, 32, 32)
y = torch.arange(64) % 10


def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


for _ in range(2):
    step()
times = []
for _ in range(steps):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
t = statistics.median(times)
a = torch.randn(2048, 2048)
b = torch.randn(2048, 2048)
a @ b
mm = []
for _ in range(5):
    s = time.perf_counter()
    a @ b
    mm.append(time.perf_counter() - s)
print(json.dumps({"workload": "seed_vit_train_b64", "median_s": t, "images_per_s": 64 / t,
                  "matmul_2048_gflops": 2 * 2048 ** 3 / statistics.median(mm) / 1e9, "threads": threads,
                  "torch": torch.__version__}))
