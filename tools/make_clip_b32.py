"""A random-init CLIP ViT-B/32 (openai/clip-vit-base-patch32's config, seeded weights) as an HF
checkpoint any server can load offline: config.json, model.safetensors, vocab.json and
merges.txt built from OpenAI's BPE merges (assets/bpe_simple_vocab_16e6.txt.gz, as
open_clip/CLIP build them), tokenizer and preprocessor configs.

    python tools/make_clip_b32.py OUT_DIR
"""
import gzip
import json
import os
import sys

import torch
from transformers.models.clip.tokenization_clip import bytes_to_unicode
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
bpe = os.path.join(here, "..", "assets", "bpe_simple_vocab_16e6.txt.gz")


# OpenAI's SimpleTokenizer: merges 1..48894 of the file, vocab = bytes, bytes+</w>, merges, specials.
merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
merges = [tuple(m.split()) for m in merges]
vocab = list(bytes_to_unicode().values())
vocab = vocab + [v + "</w>" for v in vocab]
vocab += ["".join(m) for m in merges]
vocab += ["<|startoftext|>", "<|endoftext|>"]
with open(os.path.join(out, "vocab.json"), "w") as f:
    json.dump({t: i for i, t in enumerate(vocab)}, f)
with open(os.path.join(out, "merges.txt"), "w") as f:
    f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")

torch.manual_seed(0)
model = CLIPModel(CLIPConfig()).eval()  # CLIPConfig() is ViT-B/32 with the 49408-token text tower
model.save_pretrained(out, safe_serialization=True)
tok = CLIPTokenizer(os.path.join(out, "vocab.json"), os.path.join(out, "merges.txt"))
proc = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tok)
proc.save_pretrained(out)
print(out)
