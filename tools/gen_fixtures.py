"""Generates the parity fixtures under tests/fixtures from the PyTorch reference.

Run with the reference venv (tools/setup_reference.sh):  .venv/bin/python tools/gen_fixtures.py
cargo test only reads the committed fixtures; it never needs Python.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from seed_vit import VisionTransformer, tessera_config  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
torch.set_num_threads(1)


def state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def perturb(model, g):
    # Random non-zero values everywhere (the seed zeroes cls/pos and PyTorch zeroes some biases),
    # so every parameter matters to the outputs being compared.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def write(name, tensors, cfg):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    for fname, t in tensors.items():
        save_file(t, os.path.join(d, fname))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def forward_fixture(name, seed, kw, batch):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = VisionTransformer(**kw)
    perturb(model, g)
    model.eval()
    x = torch.randn(batch, kw["in_channels"], kw["img_size"], kw["img_size"], generator=g)
    with torch.no_grad():
        logits = model(x)
    cfg = tessera_config(kw["img_size"], kw["patch_size"], kw["in_channels"], kw["num_classes"], kw["embed_dim"],
                         kw["depth"], kw["num_heads"], kw["mlp_dim"], kw["dropout"], kw["norm_first"])
    write(name, {"model.safetensors": state(model), "io.safetensors": {"input": x, "logits": logits}}, cfg)


def train_fixture(name, seed, kw, batch, steps, lr, wd, clip):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = VisionTransformer(**kw)
    perturb(model, g)
    init = state(model)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n not in ("cls_token", "pos_embed")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n not in ("cls_token", "pos_embed"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8)
    model.train()
    io = {}
    losses = []
    min_abs_grad = {n: torch.full_like(p, float("inf")) for n, p in model.named_parameters()}
    for s in range(steps):
        x = torch.randn(batch, kw["in_channels"], kw["img_size"], kw["img_size"], generator=g)
        y = torch.randint(0, kw["num_classes"], (batch,), generator=g)
        io[f"x{s}"] = x
        io[f"y{s}"] = y.to(torch.int64)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for n, p in model.named_parameters():
            min_abs_grad[n] = torch.minimum(min_abs_grad[n], p.grad.abs())
        opt.step()
        losses.append(loss.item())
    io["losses"] = torch.tensor(losses, dtype=torch.float64)
    cfg = tessera_config(kw["img_size"], kw["patch_size"], kw["in_channels"], kw["num_classes"], kw["embed_dim"],
                         kw["depth"], kw["num_heads"], kw["mlp_dim"], kw["dropout"], kw["norm_first"])
    cfg["train"] = dict(lr=lr, weight_decay=wd, steps=steps, clip=clip, betas=[0.9, 0.999], eps=1e-8)
    write(name, {"model.safetensors": init, "io.safetensors": io, "after.safetensors": state(model),
                 "min_abs_grad.safetensors": {n: t.contiguous() for n, t in min_abs_grad.items()}}, cfg)
    print(name, "losses", losses)


if __name__ == "__main__":
    # Post-norm (the seed), non-default: 1 channel, 28x28, patch 7, odd head count (3).
    forward_fixture("seed_vit_postnorm_28", 1, dict(img_size=28, patch_size=7, in_channels=1, num_classes=10,
                    embed_dim=48, depth=2, num_heads=3, mlp_dim=96, dropout=0.1, norm_first=False), batch=3)
    # Pre-norm (timm/HF layout), 3 channels, 32x32, patch 4.
    forward_fixture("seed_vit_prenorm_32", 2, dict(img_size=32, patch_size=4, in_channels=3, num_classes=7,
                    embed_dim=64, depth=3, num_heads=4, mlp_dim=128, dropout=0.1, norm_first=True), batch=2)
    # Three AdamW steps, dropout 0, gradient clipping on.
    train_fixture("seed_vit_train", 3, dict(img_size=28, patch_size=7, in_channels=1, num_classes=10,
                  embed_dim=48, depth=2, num_heads=3, mlp_dim=96, dropout=0.0, norm_first=False),
                  batch=8, steps=3, lr=1e-3, wd=0.05, clip=1.0)
    print("fixtures written to", os.path.abspath(ROOT))
