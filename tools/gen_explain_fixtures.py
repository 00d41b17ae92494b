"""Explainability reference values on the tiny HF ViT classifier fixture: class-token attention,
attention rollout (Abnar & Zuidema; mean fusion, discard ratios 0 and 0.5, as jacobgil's
vit-explain) and Chefer et al. 2021 relevance for the top class, computed in PyTorch.

Run with the reference venv:  .venv/bin/python tools/gen_explain_fixtures.py
"""
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import ViTForImageClassification

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
m = ViTForImageClassification.from_pretrained(os.path.join(ROOT, "hf_vit_cls"), attn_implementation="eager").eval()
x = load_file(os.path.join(ROOT, "hf_vit_cls", "io.safetensors"))["pixel_values"][:1]
out = m(pixel_values=x, output_attentions=True)
atts = out.attentions
for a in atts:
    a.retain_grad()
target = int(out.logits[0].argmax())
out.logits[0, target].backward()
n = atts[0].shape[-1]


def rollout(discard):
    r = torch.eye(n)
    for a in atts:
        f = a[0].detach().mean(0)
        if discard > 0:
            flat = f.view(-1).clone()
            k = int(flat.numel() * discard)
            idx = flat.argsort()[:k]
            idx = idx[idx != 0]
            flat[idx] = 0
            f = flat.view(n, n)
        f = f + torch.eye(n)  # (A + I) then row-normalise = (A/2 + I/2) renormalised
        f = f / f.sum(-1, keepdim=True)
        r = f @ r
    return r[0, 1:]


def chefer():
    r = torch.eye(n)
    for a in atts:
        cam = (a.grad[0] * a[0].detach()).clamp(min=0).mean(0)
        r = r + cam @ r
    return r[0, 1:]


save_file({"cls_attention_last": atts[-1][0].detach().mean(0)[0, 1:].contiguous(), "rollout": rollout(0.0).contiguous(),
           "rollout_discard_05": rollout(0.5).contiguous(), "relevance": chefer().contiguous(),
           "target": torch.tensor([target])}, os.path.join(ROOT, "hf_vit_cls", "explain.safetensors"))
print("target class", target)
