"""Zero-shot parity with transformers' pipeline on the nine real photos: a random-init CLIP with
the real tokenizer saved to OUT/<backend>, HF's pipeline("zero-shot-image-classification") vs
`tessera zero-shot --json`, for each image-processor backend:

* torchvision: the default pipeline, `pipeline(task, model=dir)` (AutoImageProcessor picks
  transformers 5's default `CLIPImageProcessor`); the directory's preprocessor_config.json is
  what `save_pretrained` writes, which tessera reads as the torchvision backend (its default).
* pil: `CLIPImageProcessorPil` passed to the pipeline; the directory's config names that class
  (image_processor_type "CLIPImageProcessorPil"), which tessera reads as the Pil backend.

It prints the max score difference of every (tessera backend, HF backend) pair, so the
mismatched pairs show what the backend choice is worth, then checks embeddings and logits
directly against `tessera embed`.

  .venv/bin/python tools/check_zero_shot.py [OUT] [--full] [--backend torchvision|pil]
      --full: the ViT-B/32 config; --backend: only that one (default: both)
  Needs `cargo build --release` first (it runs target/release/tessera).
"""
import json
import os
import shutil
import subprocess
import sys

import skimage
import sklearn.datasets
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer, pipeline

sys.path.insert(0, os.path.dirname(__file__))
args = sys.argv[1:]
backends = ["torchvision", "pil"]
if "--backend" in args:
    backends = [args[args.index("--backend") + 1]]
    del args[args.index("--backend"):args.index("--backend") + 2]
    assert backends[0] in ("torchvision", "pil"), backends
out = next((a for a in args if not a.startswith("--")), "/tmp/tessera_clip_zs")
full = "--full" in args
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
tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges])
procs = {"torchvision": CLIPImageProcessor(), "pil": CLIPImageProcessorPil()}
dirs = {}
for b in backends:
    d = dirs[b] = os.path.join(out, b)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    procs[b].save_pretrained(d)
    if b == "pil":
        # save_pretrained strips the "Pil" suffix; tessera needs it to pick the Pil backend
        # (transformers itself would load the torchvision backend from either file).
        p = os.path.join(d, "preprocessor_config.json")
        c = json.load(open(p))
        c["image_processor_type"] = "CLIPImageProcessorPil"
        json.dump(c, open(p, "w"), indent=2)

sk = os.path.join(os.path.dirname(skimage.__file__), "data")
sl = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
photos = [os.path.join(sk, f) for f in ["chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg", "camera.png",
                                         "horse.png", "motorcycle_left.png"]] + \
         [os.path.join(sl, f) for f in ["china.jpg", "flower.jpg"]]
labels = ["cricket", "ladybug", "spider", "cat", "rocket"]
template = "This is a photo of a {}."

ref = {}
for b in backends:
    if b == "torchvision":
        pipe = pipeline("zero-shot-image-classification", model=dirs[b])  # the default pipeline
    else:
        pipe = pipeline("zero-shot-image-classification", model=dirs[b], image_processor=procs["pil"])
    assert pipe.image_processor.backend == b, (b, type(pipe.image_processor))
    ref[b] = [pipe(p, candidate_labels=labels, hypothesis_template=template) for p in photos]
ours = {b: json.loads(subprocess.check_output(["target/release/tessera", "zero-shot", "--json", "--model", dirs[b],
                                                "--labels", ",".join(labels), "--template", template, *photos], cwd=root))
        for b in backends}

worst = 0.0
for tb in backends:
    for hb in ref:
        pair, same_order = 0.0, 0
        for p, r, o in zip(photos, ref[hb], ours[tb]):
            rs = {x["label"]: x["score"] for x in r}
            d = max(abs(rs[x["label"]] - x["score"]) for x in o["scores"])
            pair = max(pair, d)
            same_order += [x["label"] for x in r] == [x["label"] for x in o["scores"]]
            if tb == hb:
                print(f"{tb:11} {os.path.basename(p):20} HF top {r[0]['label']} {r[0]['score']:.6f} | tessera "
                      f"{o['scores'][0]['label']} {o['scores'][0]['score']:.6f} | max |diff| {d:.2e}")
        if tb == hb:
            worst = max(worst, pair)
        print(f"{'full B/32' if full else 'small'} config: tessera {tb} vs HF {hb} pipeline: max score difference "
              f"{pair:.2e}; identical ranking on {same_order}/{len(photos)} photos")

# Embeddings and logits_per_image directly (CLIPModel + the backend's processor), vs `tessera embed`.
from safetensors.numpy import load_file  # noqa: E402
from transformers.image_utils import load_image  # noqa: E402
texts = [template.format(x) for x in labels]
worst_emb = 0.0
for b in backends:
    with torch.no_grad():
        px = procs[b]([load_image(p) for p in photos], return_tensors="pt")["pixel_values"]
        t = tok(texts, padding=True, return_tensors="pt")
        o = model(pixel_values=px, input_ids=t["input_ids"], attention_mask=t["attention_mask"])
    emb = os.path.join(dirs[b], "tessera_embed.safetensors")
    cmd = ["target/release/tessera", "embed", "--model", dirs[b], "--output", emb]
    for p in photos:
        cmd += ["--image", p]
    for x in texts:
        cmd += ["--text", x]
    subprocess.check_call(cmd, cwd=root)
    e = load_file(emb)
    di = abs(e["image_embeds"] - o.image_embeds.numpy()).max()
    dt = abs(e["text_embeds"] - o.text_embeds.numpy()).max()
    dl = abs(e["similarity"] * model.logit_scale.exp().item() - o.logits_per_image.numpy()).max()
    print(f"{b:11} image_embeds {di:.2e}, text_embeds {dt:.2e}, logits_per_image {dl:.2e} (tolerance 1e-4)")
    worst_emb = max(worst_emb, di, dt, dl)
# Scores within 1e-5 of the same-backend pipeline; embeddings and logits within 1e-4.
sys.exit(0 if worst <= 1e-5 and worst_emb <= 1e-4 else 1)
