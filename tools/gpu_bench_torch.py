"""PyTorch half of tools/gpu_check.sh's throughput table: the workloads of
examples/gpu_check.rs (bench), same random-init models and shapes, on the same GPU.
Inference in bf16 autocast, training in fp32 (TF32 off, PyTorch's default for matmuls).
Prints one JSON line per workload.
    python3 tools/gpu_bench_torch.py [WORKLOAD]"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.manual_seed(0)
dev = torch.device("cuda")
reps = int(os.environ.get("BENCH_STEPS", "10"))


def timed(f, warmup, n):
    for _ in range(warmup):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        s = time.perf_counter()
        f()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - s)
    return statistics.median(ts)


def train(model, x, y, warmup, n):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        logits = out.logits if hasattr(out, "logits") else out
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
    return timed(step, warmup, n)


def run(w):
    if w == "vit_b16_b64_bf16":
        from transformers import ViTConfig, ViTForImageClassification
        m = ViTForImageClassification(ViTConfig(num_labels=1000)).to(dev).eval()
        x = torch.randn(64, 3, 224, 224, device=dev)

        def f():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                m(pixel_values=x).logits.float()
        return timed(f, 2, reps), 64
    if w == "vit_b16_finetune_b64":
        from transformers import ViTConfig, ViTForImageClassification
        m = ViTForImageClassification(ViTConfig(num_labels=37)).to(dev).train()
        x, y = torch.randn(64, 3, 224, 224, device=dev), torch.arange(64, device=dev) % 37
        return train(m, x, y, 1, min(reps, 5)), 64
    if w == "clip_image_b256_bf16":
        from transformers import CLIPConfig, CLIPModel
        m = CLIPModel(CLIPConfig()).to(dev).eval()
        x = torch.randn(256, 3, 224, 224, device=dev)

        def f():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                m.get_image_features(pixel_values=x)
        return timed(f, 2, reps), 256
    if w == "seed_vit_train_b512":
        from seed_vit import VisionTransformer
        m = VisionTransformer(img_size=32, patch_size=4, in_channels=3, num_classes=10, embed_dim=192,
                              depth=6, num_heads=3, mlp_dim=768, dropout=0.1).to(dev).train()
        x, y = torch.randn(512, 3, 32, 32, device=dev), torch.arange(512, device=dev) % 10
        return train(m, x, y, 2, reps), 512
    raise SystemExit(f"unknown workload {w}")


WORKLOADS = ["vit_b16_b64_bf16", "vit_b16_finetune_b64", "clip_image_b256_bf16", "seed_vit_train_b512"]
for w in sys.argv[1:] or WORKLOADS:
    s, items = run(w)
    print(json.dumps({"workload": w, "impl": "pytorch", "seconds": s, "items": items,
                      "items_per_s": items / s}), flush=True)
