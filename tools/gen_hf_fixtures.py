"""Parity fixtures for the Hugging Face ViT layouts (random init, tiny config).

Run with the reference venv:  .venv/bin/python tools/gen_hf_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import ViTConfig, ViTForImageClassification, ViTModel

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
torch.set_num_threads(1)


def perturb(model, g):
    # HF zeroes biases and sets LayerNorms to 1/0: random values make every tensor matter.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def main():
    g = torch.Generator().manual_seed(10)
    torch.manual_seed(10)
    cfg = ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96,
                    image_size=32, patch_size=8, num_channels=3, attn_implementation="eager")
    model = ViTModel(cfg)
    perturb(model, g)
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=g)
    x48 = torch.randn(1, 3, 48, 48, generator=g)
    with torch.no_grad():
        out = model(pixel_values=x, output_attentions=True, output_hidden_states=True)
        out48 = model(pixel_values=x48, interpolate_pos_encoding=True)
    d = os.path.join(ROOT, "hf_vit_model")
    model.save_pretrained(d)
    io = {"pixel_values": x, "last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output,
          "pixel_values_48": x48, "last_hidden_state_48": out48.last_hidden_state}
    for i, a in enumerate(out.attentions):
        io[f"attention_{i}"] = a.contiguous()
    save_file(io, os.path.join(d, "io.safetensors"))

    torch.manual_seed(11)
    cfg_c = ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96,
                      image_size=32, patch_size=8, num_channels=3, num_labels=5, attn_implementation="eager",
                      id2label={i: f"class_{i}" for i in range(5)}, label2id={f"class_{i}": i for i in range(5)})
    clf = ViTForImageClassification(cfg_c)
    perturb(clf, g)
    clf.eval()
    with torch.no_grad():
        logits = clf(pixel_values=x).logits
    d = os.path.join(ROOT, "hf_vit_cls")
    clf.save_pretrained(d)
    save_file({"pixel_values": x, "logits": logits}, os.path.join(d, "io.safetensors"))
    # The same weights as PyTorch's pickle format (pytorch_model.bin).
    b = os.path.join(ROOT, "hf_vit_cls_bin")
    os.makedirs(b, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in clf.state_dict().items()}, os.path.join(b, "pytorch_model.bin"))
    clf.config.to_json_file(os.path.join(b, "config.json"))
    print("written", sorted(os.listdir(d)))


if __name__ == "__main__":
    main()
