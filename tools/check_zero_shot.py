"""Zero-shot parity with transformers' pipeline on the real photos: a random-init CLIP with the
real tokenizer (and CLIP's default processor) saved to OUT, HF's
pipeline("zero-shot-image-classification") vs `tessera zero-shot --json`.

  .venv/bin/python tools/check_zero_shot.py [OUT] [--full]   # --full: the ViT-B/32 config
"""
import gzip
import json
import os
import subprocess
import sys

import skimage
import sklearn.datasets
import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer, pipeline

sys.path.insert(0, os.path.dirname(__file__))
out = next((a for a in sys.argv[1:] if not a.startswith("--")), "/tmp/tessera_clip_zs")
full = "--full" in sys.argv
root = os.path.join(os.path.dirname(__file__), "..")
from gen_tokenizer_fixtures import merges, vocab  # noqa: E402  (the real BPE, as HF builds it)

torch.manual_seed(0)
if full:
    cfg = CLIPConfig()  # openai/clip-vit-base-patch32 sizes
else:
    cfg = CLIPConfig(text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
                     vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                        image_size=224, patch_size=32), projection_dim=32)
model = CLIPModel(cfg).eval()
with torch.no_grad():
    model.logit_scale.fill_(4.0)  # sharper than init so scores differ visibly
model.save_pretrained(out)
tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges])
tok.save_pretrained(out)
proc = CLIPImageProcessorPil()
proc.save_pretrained(out)
sk = os.path.join(os.path.dirname(skimage.__file__), "data")
sl = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
photos = [os.path.join(sk, f) for f in ["chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg", "camera.png", "horse.png"]] + \
         [os.path.join(sl, "china.jpg")]
labels = ["cricket", "ladybug", "spider", "cat", "rocket"]
template = "This is a photo of a {}."
pipe = pipeline("zero-shot-image-classification", model=model, tokenizer=tok, image_processor=proc)
ref = [pipe(p, candidate_labels=labels, hypothesis_template=template) for p in photos]
ours = json.loads(subprocess.check_output(["target/release/tessera", "zero-shot", "--json", "--model", out, "--labels", ",".join(labels),
                                           "--template", template, *photos], cwd=root))
worst, same_order = 0.0, 0
for p, r, o in zip(photos, ref, ours):
    rs = {x["label"]: x["score"] for x in r}
    d = max(abs(rs[x["label"]] - x["score"]) for x in o["scores"])
    worst = max(worst, d)
    same_order += [x["label"] for x in r] == [x["label"] for x in o["scores"]]
    print(f"{os.path.basename(p):14} HF top {r[0]['label']} {r[0]['score']:.6f} | tessera {o['scores'][0]['label']} {o['scores'][0]['score']:.6f} | max |diff| {d:.2e}")
print(f"{'full B/32' if full else 'small'} config: max score difference {worst:.2e}; identical ranking on {same_order}/{len(photos)} photos")

# Embeddings and logits_per_image directly (CLIPModel + CLIPProcessor), vs `tessera embed`.
from safetensors.numpy import load_file  # noqa: E402
from transformers.image_utils import load_image  # noqa: E402
texts = [template.format(x) for x in labels]
with torch.no_grad():
    px = proc([load_image(p) for p in photos], return_tensors="pt")["pixel_values"]
    t = tok(texts, padding=True, return_tensors="pt")
    o = model(pixel_values=px, input_ids=t["input_ids"], attention_mask=t["attention_mask"])
emb = os.path.join(out, "tessera_embed.safetensors")
args = ["target/release/tessera", "embed", "--model", out, "--output", emb]
for p in photos:
    args += ["--image", p]
for x in texts:
    args += ["--text", x]
subprocess.check_call(args, cwd=root)
e = load_file(emb)
di = abs(e["image_embeds"] - o.image_embeds.numpy()).max()
dt = abs(e["text_embeds"] - o.text_embeds.numpy()).max()
dl = abs(e["similarity"] * model.logit_scale.exp().item() - o.logits_per_image.numpy()).max()
print(f"image_embeds {di:.2e}, text_embeds {dt:.2e}, logits_per_image {dl:.2e} (tolerance 1e-4)")
worst = max(worst, di, dt, dl)
sys.exit(0 if worst <= 1e-4 else 1)
