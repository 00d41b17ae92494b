"""Which parameters transformers' Trainer decays (`Trainer.get_decay_parameter_names`) for the
HF ViT classifier fixture and for CLIP's tiny fixture: the reference of tessera's
`DecayRule::HfTrainer` (tests/optim_decay.rs). transformers 5 names some modules differently in
memory than on disk (`vit.layers.0.attention.q_proj` is saved as
`vit.encoder.layer.0.attention.attention.query`); the names written here are the on-disk ones
tessera loads, matched through `save_pretrained`'s tensors.

Run with the reference venv:  .venv/bin/python tools/gen_decay_fixture.py
"""
import json
import os
import tempfile

import torch
from safetensors.torch import load_file
from transformers import CLIPConfig, CLIPModel, Trainer, ViTConfig, ViTForImageClassification

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
out = {}
torch.manual_seed(0)
for name, cfg_cls, model_cls in [
    ("hf_vit_cls", ViTConfig, ViTForImageClassification),
    ("clip_tiny", CLIPConfig, CLIPModel),
]:
    cfg = cfg_cls.from_pretrained(os.path.join(ROOT, name))
    model = model_cls(cfg)
    with torch.no_grad():
        for p in model.parameters():  # every tensor distinct, so names match by value
            p.copy_(torch.randn_like(p))
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        saved = load_file(os.path.join(d, "model.safetensors"))
    on_disk = {}
    for n, p in model.named_parameters():
        hits = [k for k, t in saved.items() if t.shape == p.shape and torch.equal(t, p.detach())]
        assert len(hits) == 1, (n, hits)
        on_disk[n] = hits[0]
    # The method reads nothing from the trainer instance.
    decayed = Trainer.get_decay_parameter_names(None, model)
    out[name] = {
        "parameters": sorted(on_disk.values()),
        "decayed": sorted(on_disk[n] for n in decayed),
    }
with open(os.path.join(ROOT, "decay_parameters.json"), "w") as f:
    json.dump(out, f, indent=1)
print({k: (len(v["parameters"]), len(v["decayed"])) for k, v in out.items()})
