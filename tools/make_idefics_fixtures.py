"""Tiny random-init IDEFICS (transformers' Flamingo reproduction) for tessera's parity tests.

Writes tests/fixtures/idefics_{float,vector}/: config.json, model.safetensors (save_pretrained)
and io.safetensors with the inputs (`input_ids`, `attention_mask` with a padded tail,
`pixel_values` [2, 2, 3, 30, 30], `image_attention_mask` [2, 12, 2] one-hot on the latest
image, the first tokens of each row seeing no image so the cross-attention gate is exercised)
and the outputs: `logits`, the vision tower's `last_hidden_state`, the resampler's latents and
the decoder's final states.

Every parameter is redrawn: the tanh gates (alpha_cross_attn, alpha_dense: zero at init would
make every gated layer an identity), the resampler's latents, RMSNorm and LayerNorm weights,
so no layer is trivial. "float" has scalar gates and qk layer norms in both the cross-attention
and the resampler; "vector" has per-channel gates, no qk norms, and no decoupled vocabulary.

    .venv/bin/python tools/make_idefics_fixtures.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import IdeficsConfig, IdeficsForVisionText2Text

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("norm" in name or ".ln." in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif "alpha" in name:
                p.copy_(0.8 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def case(name, alpha_type, qk_norms, additional_vocab, seed):
    cfg = IdeficsConfig(
        vocab_size=100, additional_vocab_size=additional_vocab, hidden_size=16, intermediate_size=37,
        num_hidden_layers=4, num_attention_heads=4, cross_layer_interval=2, qk_layer_norms=qk_norms,
        alpha_initializer="zeros", alpha_type=alpha_type,  # redrawn below
        use_resampler=True, freeze_text_layers=False, freeze_vision_layers=False, freeze_lm_head=False,
        max_position_embeddings=64, tie_word_embeddings=False,
        vision_config=dict(embed_dim=32, image_size=30, patch_size=2, intermediate_size=37,
                           num_hidden_layers=2, num_attention_heads=4),
        perceiver_config=dict(use_resampler=True, resampler_n_latents=4, resampler_depth=2,
                              resampler_n_heads=2, resampler_head_dim=8,
                              qk_layer_norms_perceiver=qk_norms))
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = IdeficsForVisionText2Text(cfg).eval()
    randomise(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    vocab = cfg.vocab_size + cfg.additional_vocab_size
    ids = torch.randint(3, vocab, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 10:] = 0
    pixels = torch.randn(2, 2, 3, 30, 30, generator=g)
    # Row 0: image 0 from token 2, image 1 from token 7; row 1: image 0 from token 4 only, and
    # its second image slot seen by no token.
    img = torch.zeros(2, 12, 2, dtype=torch.long)
    img[0, 2:7, 0] = 1
    img[0, 7:, 1] = 1
    img[1, 4:, 0] = 1
    captured = {}
    model.model.vision_model.register_forward_hook(
        lambda m, i, o: captured.__setitem__("vision_last_hidden_state", o.last_hidden_state))
    model.model.perceiver_resampler.register_forward_hook(
        lambda m, i, o: captured.__setitem__("resampled", o))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels,
                    image_attention_mask=img, output_hidden_states=True)
    out_dir = os.path.join(ROOT, name)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    io = dict(input_ids=ids.float(), attention_mask=mask.float(), pixel_values=pixels,
              image_attention_mask=img.float(), logits=out.logits,
              last_hidden_state=out.hidden_states[-1], **captured)
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out_dir, "io.safetensors"))
    print(name, {k: tuple(v.shape) for k, v in io.items()})


if __name__ == "__main__":
    case("idefics_float", "float", True, 2, 3)
    case("idefics_vector", "vector", False, 0, 4)
