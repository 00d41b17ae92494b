"""Full ViT-B/16 parity data (random init, too large to commit): writes HF checkpoints and
expected outputs to OUT (default /tmp/tessera_b16), then:

  TESSERA_B16_DIR=/tmp/tessera_b16 cargo test --release --test hf_vit_parity -- --ignored --nocapture
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import ViTConfig, ViTForImageClassification, ViTModel

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tessera_b16"
torch.manual_seed(0)
torch.set_num_threads(os.cpu_count())
x = torch.randn(2, 3, 224, 224)
cfg = ViTConfig(attn_implementation="eager")  # the B/16 defaults
m = ViTModel(cfg).eval()
with torch.no_grad():
    o = m(pixel_values=x)
m.save_pretrained(os.path.join(out, "model"))
save_file({"pixel_values": x, "last_hidden_state": o.last_hidden_state.contiguous(), "pooler_output": o.pooler_output},
          os.path.join(out, "model", "io.safetensors"))
c = ViTForImageClassification(ViTConfig(num_labels=37, attn_implementation="eager")).eval()
with torch.no_grad():
    logits = c(pixel_values=x).logits
c.save_pretrained(os.path.join(out, "cls"))
save_file({"pixel_values": x, "logits": logits}, os.path.join(out, "cls", "io.safetensors"))
print("wrote", out)
