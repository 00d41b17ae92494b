"""PyTorch half of the benchmark suite (benches/suite.rs): the same random-init models, shapes and
thread count. One workload per process (peak RSS is per workload):
    .venv/bin/python tools/bench_suite.py WORKLOAD
Prints one JSON line with the same fields as the Rust side."""
import json
import os
import resource
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import bench_common  # noqa: E402

threads = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
reps = int(os.environ.get("BENCH_STEPS", "5"))
torch.set_num_threads(threads)
torch.manual_seed(0)


def timed(f, warmup=1, n=reps):
    return bench_common.timed(f, warmup, n)


def ids(b, t):
    x = torch.tensor([[400 + (i * 31 + j * 7) % 40000 for j in range(t)] for i in range(b)])
    x[:, 0] = 49406
    x[:, -1] = 49407
    return x


def run(w):
    if w == "matmul_2048":
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        return timed(lambda: a @ b), 1, "matmul"
    if w in ("vit_b16_b1", "vit_b16_b8", "vit_b16_b8_bf16", "vit_b16_b8_int8"):
        from transformers import ViTConfig, ViTForImageClassification
        b = 1 if w == "vit_b16_b1" else 8
        m = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
        if w.endswith("_int8"):
            # PyTorch's dynamic quantisation: int8 linear weights, activations quantised per call.
            m = torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
        px = torch.randn(b, 3, 224, 224)
        if w.endswith("_bf16"):
            def f():
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    m(pixel_values=px).logits.float()
        else:
            def f():
                with torch.no_grad():
                    m(pixel_values=px).logits
        return timed(f), b, "img"
    if w in ("clip_image_b8", "clip_image_b8_int8", "clip_text77_b8", "clip_text16_b8"):
        from transformers import CLIPConfig, CLIPModel
        m = CLIPModel(CLIPConfig()).eval()
        if w.endswith("_int8"):
            m = torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
        b = 8
        if w.startswith("clip_image_b8"):
            px = torch.randn(b, 3, 224, 224)
            with torch.no_grad():
                return timed(lambda: m.get_image_features(pixel_values=px)), b, "img"
        t = ids(b, 77 if w == "clip_text77_b8" else 16)
        with torch.no_grad():
            return timed(lambda: m.get_text_features(input_ids=t), 2, max(reps, 10)), b, "text"
    if w == "seed_vit_train_b64":
        from seed_vit import VisionTransformer
        model = VisionTransformer(img_size=32, patch_size=4, in_channels=3, num_classes=10, embed_dim=192,
                                  depth=6, num_heads=3, mlp_dim=768, dropout=0.1).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x, y = torch.randn(64, 3, 32, 32), torch.arange(64) % 10

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return timed(step, 2, max(reps, 10)), 64, "img"
    if w == "vit_b16_finetune_b16":
        from transformers import ViTConfig, ViTForImageClassification
        model = ViTForImageClassification(ViTConfig(num_labels=37)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        x, y = torch.randn(16, 3, 224, 224), torch.arange(16) % 37

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y).backward()
            opt.step()
        return timed(step, 1, min(reps, 5)), 16, "img"
    if w.startswith("detr_r50"):
        # facebook/detr-resnet-50's config, random weights (timm ResNet-50, built offline).
        from transformers import DetrConfig, DetrForObjectDetection
        m = DetrForObjectDetection(DetrConfig(use_pretrained_backbone=False)).eval()
        px = torch.randn(1, 3, 800, 1066)
        mask = torch.ones(1, 800, 1066, dtype=torch.long)
        if "backbone" in w:
            def f():
                with torch.no_grad():
                    m.model.backbone.model(px)
        else:
            def f():
                with torch.no_grad():
                    m(pixel_values=px, pixel_mask=mask)
        return timed(f, 1, min(reps, 5)), 1, "img"
    if w.startswith("blip_caption_b"):
        from transformers import BlipConfig, BlipForConditionalGeneration
        b = 8 if w.endswith("b8") else 1
        m = BlipForConditionalGeneration(BlipConfig()).eval()
        px = torch.randn(b, 3, 384, 384)

        def f():
            with torch.no_grad():
                out = m.generate(pixel_values=px, max_new_tokens=20, min_new_tokens=20)
            assert out.shape[1] == 21, out.shape

        return timed(f, 1, min(reps, 3)), b * 20, "token"
    raise SystemExit(f"unknown workload {w}")


w = sys.argv[1]
s, items, unit = run(w)
print(json.dumps({"workload": w, "impl": "pytorch", "median_s": s, "items": items, "unit": unit,
                  "per_s": items / s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "threads": threads, "torch": torch.__version__}))
