"""Tiny random-init Perceiver image classifiers for tessera's parity tests.

Writes tests/fixtures/perceiver_{learned,fourier,conv}/: config.json, the weights (learned and
fourier as save_pretrained's model.safetensors; conv as `pytorch_model.bin`, as the real
deepmind/vision-perceiver-* checkpoints ship) and io.safetensors with `pixel_values`, `logits`,
`last_hidden_state` (the latents after the encoder), the encoder cross-attention and the
decoder's cross-attention probabilities.

Every parameter is redrawn (LayerNorms, latents, position tables and the decoder's query
included) and the conv variant's batch-norm statistics too, so no layer is an identity. The
configs exercise: shared self-attention blocks (num_blocks 2), several cross-attention heads
where the width allows (3 for Fourier's 261 channels, 2 for conv's 322), qk_channels ≠
v_channels, widening factors, relu vs gelu, and the conv variant's 32 → 16 → 7 token grid.

    .venv/bin/python tools/make_perceiver_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import (PerceiverConfig, PerceiverForImageClassificationConvProcessing,
                          PerceiverForImageClassificationFourier,
                          PerceiverForImageClassificationLearned)

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name and name.endswith("weight") or "batchnorm.weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.12 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


CASES = {
    "perceiver_learned": (PerceiverForImageClassificationLearned, 8,
                          dict(image_size=8, d_model=512, num_latents=6, d_latents=32, num_blocks=2,
                               num_self_attends_per_block=2, num_self_attention_heads=4,
                               num_cross_attention_heads=2, qk_channels=16, v_channels=32,
                               self_attention_widening_factor=2, cross_attention_widening_factor=1,
                               num_labels=5), "safetensors"),
    "perceiver_fourier": (PerceiverForImageClassificationFourier, 6,
                          dict(image_size=6, d_model=261, num_latents=5, d_latents=24, num_blocks=1,
                               num_self_attends_per_block=3, num_self_attention_heads=2,
                               num_cross_attention_heads=3, hidden_act="relu",
                               cross_attention_widening_factor=2, num_labels=4), "safetensors"),
    "perceiver_conv": (PerceiverForImageClassificationConvProcessing, 32,
                       dict(image_size=32, d_model=322, num_latents=4, d_latents=16, num_blocks=3,
                            num_self_attends_per_block=1, num_self_attention_heads=2,
                            num_cross_attention_heads=2, num_labels=3), "bin"),
}

for i, (name, (cls, side, kw, fmt)) in enumerate(CASES.items()):
    torch.manual_seed(i)
    cfg = PerceiverConfig(attention_probs_dropout_prob=0.0, attn_implementation="eager", **kw)
    model = cls(cfg).eval()
    randomise(model, 100 + i)
    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    if fmt == "bin":
        os.remove(os.path.join(out, "model.safetensors"))
        torch.save(model.state_dict(), os.path.join(out, "pytorch_model.bin"))
    px = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(7 + i))
    with torch.no_grad():
        o = model(inputs=px, output_attentions=True, output_hidden_states=True)
        # The latents after the encoder, from the inner PerceiverModel.
        inner = model.perceiver(inputs=px)
    tensors = {
        "pixel_values": px,
        "logits": o.logits,
        "last_hidden_state": inner.last_hidden_state,
        "encoder_cross_attention": o.cross_attentions[0],
        "decoder_cross_attention": o.cross_attentions[-1],
    }
    for j, a in enumerate(o.attentions):
        tensors[f"self_attention_{j}"] = a
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "io.safetensors"))
    print(name, {k: tuple(v.shape) for k, v in tensors.items()})
