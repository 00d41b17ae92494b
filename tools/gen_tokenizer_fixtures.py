"""CLIP tokenizer fixtures: ids from transformers' CLIPTokenizer built from the real merges
(assets/bpe_simple_vocab_16e6.txt.gz, see tools/fetch_clip_bpe.sh), for strings that stress it.

Run with the reference venv:  .venv/bin/python tools/gen_tokenizer_fixtures.py
"""
import gzip
import json
import os

from transformers import CLIPTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "..")
bpe = os.path.join(ROOT, "assets", "bpe_simple_vocab_16e6.txt.gz")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
vocab = list(bytes_to_unicode().values())
vocab = vocab + [v + "</w>" for v in vocab]
vocab += ["".join(m.split()) for m in merges]
vocab += ["<|startoftext|>", "<|endoftext|>"]
tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges])



def main():
    texts = [
        "This is a photo of a ladybug.", "a photo of a cat", "A PHOTO OF A DOG!", "cricket", "ladybug", "spider",
        "", " ", "   leading and trailing   ", "multiple\n\nlines\tand\ttabs", "Hello, world!!! ...?",
        "it's, they're, we've, I'm, you'll, he'd", "don't won't can't", "numbers 1234567890 and 3.14159",
        "2024-11-27 12:30:45", "$100 + 50% = €150", "café naïve résumé façade", "Crème brûlée à la mode",
        "emoji 😀🎉👍🏽 are fun", "🐞 on a leaf", "日本語のテキスト", "中文文本测试", "한국어 텍스트", "Ελληνικά κείμενα",
        "Русский текст", "العربية نص", "e\u0301 combining accent", "ﬁ ligature and ½ fractions", "<|startoftext|> inside text",
        "trailing <|endoftext|>", "snake_case and camelCase and kebab-case", "http://example.com/path?q=1&x=2",
        "a red circle on the left", "two blue squares at the top right",
        "very long text " * 40,
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
    ]
    out = []
    for t in texts:
        enc = tok(t)
        pad = tok(t, padding="max_length", truncation=True, max_length=77)
        out.append({"text": t, "ids": enc["input_ids"], "padded_ids": pad["input_ids"], "padded_mask": pad["attention_mask"]})
    path = os.path.join(ROOT, "tests", "fixtures", "clip_tokenizer.json")
    with open(path, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
    print(len(out), "strings;", out[0]["ids"])


if __name__ == "__main__":
    main()
