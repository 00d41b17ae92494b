"""CLIP parity fixtures (random init, tiny config) from transformers.

Run with the reference venv:  .venv/bin/python tools/gen_clip_fixtures.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
torch.set_num_threads(1)


def build(name, eos, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=998, eos_token_id=eos,
                         pad_token_id=eos if eos != 2 else 1),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3,
                           image_size=32, patch_size=8),
        projection_dim=24, attn_implementation="eager")
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    px = torch.randn(3, 3, 32, 32, generator=g)
    # Two prompts, different lengths, padded with eos after the end (as CLIPTokenizer pads).
    end = 999 if eos != 2 else 999  # the largest id, so the legacy arg-max rule finds it too
    ids = torch.tensor([[998, 5, 17, 300, end, end, end, end], [998, 42, end, end, end, end, end, end]])
    if eos == 2:
        ids = torch.tensor([[998, 5, 17, 300, 999, 1, 1, 1], [998, 42, 999, 1, 1, 1, 1, 1]])
    mask = (torch.arange(8)[None, :] <= torch.tensor([[4], [2]])).long()
    with torch.no_grad():
        out = model(pixel_values=px, input_ids=ids, attention_mask=mask, output_attentions=True)
    d = os.path.join(ROOT, name)
    model.save_pretrained(d)
    io = {"pixel_values": px, "input_ids": ids, "attention_mask": mask, "image_embeds": out.image_embeds,
          "text_embeds": out.text_embeds, "logits_per_image": out.logits_per_image.contiguous()}
    for i, a in enumerate(out.vision_model_output.attentions):
        io[f"vision_attention_{i}"] = a.contiguous()
    save_file(io, os.path.join(d, "io.safetensors"))
    print(name, sorted(os.listdir(d)))


build("clip_tiny", 999, 20)
build("clip_tiny_legacy_eos", 2, 21)
