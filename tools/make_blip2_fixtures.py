"""Tiny random-init BLIP-2 (ViT + Q-Former + OPT) fixtures for tessera's parity tests.

Writes tests/fixtures/blip2_opt/ (pre-norm OPT, safetensors, as save_pretrained writes it) and
tests/fixtures/blip2_opt_postnorm/ (OPT-350m's post-norm layers without a final LayerNorm, the
Q-Former's text FFN present because `use_qformer_text_input` is on; saved as
`pytorch_model.bin` with the tied LM head's copy), each with
reference.safetensors / reference.json: the vision states, the Q-Former's output, the projected
image features, teacher-forced logits of a padded batch, and the ids transformers' `generate`
returns for greedy decoding, the logits processors and beam search.

Every parameter is redrawn (LayerNorms, `query_tokens` and the qkv bias's zero key part
included), so no layer is an identity; the end-of-text row of the tied embeddings is scaled so
that some sequences stop early (exercising eos and padding).

    .venv/bin/python tools/make_blip2_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import Blip2Config, Blip2ForConditionalGeneration

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
VOCAB, BOS, EOS, PAD, IMAGE = 99, 2, 2, 1, 98
QUERIES = 4


def config(post_norm=False):
    text = dict(model_type="opt", vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                num_attention_heads=4, ffn_dim=37, max_position_embeddings=64,
                word_embed_proj_dim=16, do_layer_norm_before=not post_norm,
                pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, dropout=0.0)
    return Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4, image_size=30, patch_size=6, qkv_bias=True,
                           layer_norm_eps=1e-6),
        qformer_config=dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                            intermediate_size=37, cross_attention_frequency=2, vocab_size=VOCAB,
                            max_position_embeddings=64, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, use_qformer_text_input=post_norm),
        text_config=text, num_query_tokens=QUERIES, image_token_index=IMAGE,
        attn_implementation="eager",
    )


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm = ("LayerNorm" in name or "layer_norm" in name or "layernorm" in name)
            if norm and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        # Stops some sequences after a few tokens (the LM head is tied to these embeddings).
        model.language_model.get_input_embeddings().weight[EOS] *= 8.0


def prompts_as_processor():
    """What Blip2Processor gives for two texts of different lengths with left padding: the
    image tokens first, then the tokenizer's (padded) ids, BOS included."""
    texts = [[BOS, 11, 12], [BOS, 21, 22, 23, 24]]
    n = max(map(len, texts))
    ids = [[IMAGE] * QUERIES + [PAD] * (n - len(t)) + t for t in texts]
    mask = [[1] * QUERIES + [0] * (n - len(t)) + [1] * len(t) for t in texts]
    return torch.tensor(ids), torch.tensor(mask)


def build(name, post_norm, seed):
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config(post_norm)).eval()
    randomise(model, seed)
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    if post_norm:
        # The real deepmind/Salesforce-era files: a pickled state dict, no safetensors.
        model.config.save_pretrained(d)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    else:
        model.save_pretrained(d)
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randn(2, 3, 30, 30, generator=g)
    ids, mask = prompts_as_processor()
    with torch.no_grad():
        feats = model.get_image_features(pixel_values=pixels, return_dict=True)
        out = model(pixel_values=pixels, input_ids=ids, attention_mask=mask)
        ref = {"prompt": ids.tolist(), "prompt_mask": mask.tolist()}
        runs = {
            "greedy": dict(max_new_tokens=8),
            "greedy_penalised": dict(max_new_tokens=8, repetition_penalty=1.5, min_new_tokens=4),
            "beam3": dict(num_beams=3, max_new_tokens=8),
            "beam4_early": dict(num_beams=4, max_new_tokens=9, early_stopping=True,
                                length_penalty=0.6),
            "beam2_never": dict(num_beams=2, max_new_tokens=7, early_stopping="never",
                                length_penalty=1.5, num_return_sequences=2),
        }
        for k, kw in runs.items():
            ids_out = model.generate(pixel_values=pixels, input_ids=ids, attention_mask=mask,
                                     do_sample=False, **kw)
            ref[k] = {"settings": kw, "ids": ids_out.tolist()}
        # No prompt at all: `[image] * Q + [bos]`, as generate builds it.
        for k, kw in {"unconditional": dict(max_new_tokens=8),
                      "unconditional_beam": dict(max_new_tokens=8, num_beams=3)}.items():
            ref[k] = {"settings": kw,
                      "ids": model.generate(pixel_values=pixels, do_sample=False, **kw).tolist()}
        # Per-word maps: each new token's attention to the image tokens (mean over OPT's heads
        # and layers, renormalised) weighting the queries' cross-attention over the image (mean
        # over heads and cross-attention layers).
        q_out = model.qformer(query_embeds=model.query_tokens.expand(2, -1, -1),
                              encoder_hidden_states=feats.vision_outputs.last_hidden_state,
                              output_attentions=True, return_dict=True)
        qmaps = torch.stack([a.mean(1) for a in q_out.cross_attentions]).mean(0)  # [B, Q, M]
        g = model.generate(pixel_values=pixels, input_ids=ids, attention_mask=mask,
                           do_sample=False, max_new_tokens=5, output_attentions=True,
                           return_dict_in_generate=True)
        cols = (ids[0] == IMAGE).nonzero().flatten()
        maps = []
        for step in g.attentions:
            a = torch.stack([l[:, :, -1].mean(1) for l in step]).mean(0)  # [B, T]
            w = a[:, cols]
            w = w / w.sum(1, keepdim=True)
            maps.append(torch.einsum("bq,bqm->bm", w, qmaps))
        ref["word_maps"] = {"settings": {"max_new_tokens": 5}, "ids": g.sequences.tolist()}
    stopped = sum(EOS in r[len(ids[0]):] for r in ref["greedy"]["ids"])
    print(name, "greedy rows that stopped at eos:", stopped)
    save_file({"pixel_values": pixels.contiguous(),
               "image_embeds": feats.vision_outputs.last_hidden_state.contiguous(),
               "qformer": feats.qformer_outputs.last_hidden_state.contiguous(),
               "image_features": feats.pooler_output.contiguous(),
               "ids": ids, "mask": mask, "logits": out.logits.contiguous(),
               "word_maps": torch.stack(maps).contiguous()},
              os.path.join(d, "reference.safetensors"))
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


CORPUS = ["a picture of a red circle left of a blue square",
          "Question: what colour is the cat? Answer: red",
          "two cats sitting on a couch", "a dog riding a frisbee in the park, yes or no?"]


def opt_style_tokenizer():
    """A byte-level BPE over the fixture's 98 ids with OPT's specials (<s> 0, <pad> 1, </s> 2,
    <unk> 3) and OPT's BOS rule (`</s>` first), as transformers' GPT2Tokenizer saves it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Tokenizer
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 5, trainers.BpeTrainer(
        vocab_size=VOCAB - 1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=[], show_progress=False))
    m = json.loads(tok.to_str())["model"]
    return GPT2Tokenizer(vocab=m["vocab"], merges=[tuple(x) for x in m["merges"]],
                         bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                         unk_token="<unk>", add_bos_token=True)


def tokenizer_cases(tok, strings):
    cases = []
    for s in strings:
        for special in [True, False]:
            ids = tok(s, add_special_tokens=special)["input_ids"]
            cases.append({"text": s, "special": special, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=True)})
    return cases


def end_to_end():
    """Image file -> Blip2Processor -> generate -> decoded text, as a user runs BLIP-2."""
    import numpy as np
    from PIL import Image
    from transformers import BlipImageProcessor, Blip2Processor
    d = os.path.join(ROOT, "blip2_opt")
    ip = BlipImageProcessor(size={"height": 30, "width": 30})
    Blip2Processor(image_processor=ip, tokenizer=opt_style_tokenizer(),
                   num_query_tokens=QUERIES).save_pretrained(d)
    proc = Blip2Processor.from_pretrained(d)
    assert proc.tokenizer.convert_tokens_to_ids("<image>") == IMAGE
    rng = np.random.default_rng(7)
    imgs = [Image.fromarray(rng.integers(0, 255, (41, 53, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 255, (37, 29, 3), dtype=np.uint8))]
    imgs[0].save(os.path.join(d, "image.png"))
    imgs[1].save(os.path.join(d, "image2.png"))
    model = Blip2ForConditionalGeneration.from_pretrained(d, attn_implementation="eager").eval()
    runs = {}
    with torch.no_grad():
        for prompt in [None, "a picture of", "Question: what colour is the cat? Answer:"]:
            for beams in [1, 3]:
                inputs = proc(images=imgs[0], text=prompt, return_tensors="pt")
                ids = model.generate(**inputs, max_new_tokens=6, num_beams=beams)
                runs[f"{prompt}|{beams}"] = {"ids": ids[0].tolist(),
                                             "text": proc.decode(ids[0], skip_special_tokens=True)}
        # Two images, prompts of different lengths: the tokenizer pads on the left.
        proc.tokenizer.padding_side = "left"
        texts = ["a picture of", "two cats"]
        inputs = proc(images=imgs, text=texts, padding=True, return_tensors="pt")
        ids = model.generate(**inputs, max_new_tokens=6)
        runs["batch"] = {"texts": texts, "input_ids": inputs["input_ids"].tolist(),
                         "attention_mask": inputs["attention_mask"].tolist(),
                         "ids": ids.tolist(),
                         "text": proc.batch_decode(ids, skip_special_tokens=True)}
    with open(os.path.join(d, "end_to_end.json"), "w") as f:
        json.dump(runs, f, indent=1)
    strings = CORPUS + ["a picture of", " a picture", "a  picture   of ", "", "cats?", "<image>",
                        "</s>a dog", "Answer:", "red, blue; green", "yes no yes",
                        "Question:Answer:", "a picture of two cats in the park"]
    with open(os.path.join(d, "tokenizer_cases.json"), "w") as f:
        json.dump(tokenizer_cases(proc.tokenizer, strings), f, indent=0)


def gpt2_cases():
    """GPT-2's byte-level BPE (OPT's family) through transformers' GPT2Tokenizer built from
    OpenAI's encoder.json + vocab.bpe (tools/fetch_gpt2_tokenizer.sh), on assorted strings: the
    ids and text tessera's tokenizer.json path (the hub's file, another package) must give."""
    from transformers import GPT2Tokenizer
    a = os.path.join(ROOT, "..", "..", "assets", "gpt2")
    vocab = json.load(open(os.path.join(a, "encoder.json"), encoding="utf-8"))
    merges = [tuple(l.split(" ")) for l in
              open(os.path.join(a, "vocab.bpe"), encoding="utf-8").read().split("\n")[1:] if l]
    tok = GPT2Tokenizer(vocab=vocab, merges=merges)
    strings = [
        "a picture of", "Hello world", " Hello world", "Question: how many cats are there? Answer:",
        "two cats laying on a couch", "The quick brown fox jumps over the lazy dog.",
        "don't stop, won't stop, can't stop", "e-mail: me@example.com", "3.14159 and 1,000,000",
        "naïve café résumé", "Übermäßig GROSS", "日本語のテキスト", "中文字符 mixed with english",
        "Ελληνικά", "Привет, мир", "مرحبا بالعالم", "emoji 😀 🐱 👩‍👩‍👧", "tabs\tand\nnewlines",
        "   leading and trailing   ", "", "<|endoftext|>", "text<|endoftext|>more",
        "unbelievably antidisestablishmentarianism", "COVID-19 vaccines", "#hashtag @mention",
        "a (parenthesised) remark; a [bracketed] one", "ellipsis... and — dashes – here",
        "\"quoted\" 'single' ''double''", "x" * 120, "a red circle left of a blue square",
        "ＦＵＬＬＷＩＤＴＨ", "control\u0007char", "zero\u200bwidth", "combining e\u0301",
        "$100 + 50% = ?", "    def f(x):\n        return x**2", "I'm, you're, they'll, we've, he'd",
        "http://example.com/a?b=c&d=e", "1234567890 12 345", "!!!???...",
    ]
    cases = tokenizer_cases(tok, strings)
    with open(os.path.join(ROOT, "gpt2_tokenizer_cases.json"), "w") as f:
        json.dump(cases, f, indent=0, ensure_ascii=False)
    print(len(cases), "gpt2 cases")


def opt_alone():
    """OPTForCausalLM in opt-350m's layout (post-norm, no final LayerNorm, `word_embed_proj_dim`
    12 != `hidden_size` 16, so `project_in`/`project_out`): logits of a left-padded batch and
    the ids `generate` returns."""
    from transformers import OPTConfig, OPTForCausalLM
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                    ffn_dim=37, max_position_embeddings=64, word_embed_proj_dim=12,
                    do_layer_norm_before=False, pad_token_id=PAD, bos_token_id=BOS,
                    eos_token_id=EOS, dropout=0.0, attn_implementation="eager")
    model = OPTForCausalLM(cfg).eval()
    randomise_lm(model, 31)
    d = os.path.join(ROOT, "opt_350m_like")
    model.save_pretrained(d)
    ids = torch.tensor([[PAD, PAD, BOS, 11, 12, 13], [BOS, 21, 22, 23, 24, 25]])
    mask = (ids != PAD).long()
    ref = {"prompt": ids.tolist(), "prompt_mask": mask.tolist()}
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        for k, kw in {"greedy": dict(max_new_tokens=8),
                      "beam3": dict(num_beams=3, max_new_tokens=8)}.items():
            ref[k] = {"settings": kw, "ids": model.generate(
                input_ids=ids, attention_mask=mask, do_sample=False, **kw).tolist()}
    save_file({"ids": ids, "mask": mask, "logits": logits.contiguous()},
              os.path.join(d, "reference.safetensors"))
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


def randomise_lm(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def blip_word_relevance():
    """BLIP's gradient-weighted per-word maps on the BLIP captioning fixture
    (tools/make_blip_fixtures.py): for each generated word j, the gradient of its logit (at
    position j-1) with respect to every cross-attention map, times the map, positive part, mean
    over heads, row j-1, mean over layers, normalised to sum 1."""
    from safetensors.torch import load_file
    from transformers import BlipForConditionalGeneration
    d = os.path.join(ROOT, "blip_caption")
    model = BlipForConditionalGeneration.from_pretrained(d, attn_implementation="eager").eval()
    r = load_file(os.path.join(d, "reference.safetensors"))
    ref = json.load(open(os.path.join(d, "reference.json")))
    seq = ref["unconditional"]["ids"][1]  # the row that runs to max_new_tokens
    with torch.no_grad():
        image = model.vision_model(pixel_values=r["pixel_values"][1:2]).last_hidden_state
    ids = torch.tensor([seq])
    out = model.text_decoder(input_ids=ids, encoder_hidden_states=image, output_attentions=True,
                             return_dict=True)
    cross = out.cross_attentions
    for a in cross:
        a.retain_grad()
    maps = []
    for j in range(1, len(seq)):
        for a in cross:
            a.grad = None
        out.logits[0, j - 1, seq[j]].backward(retain_graph=True)
        m = torch.stack([(a.grad[0] * a[0]).clamp(min=0).mean(0)[j - 1] for a in cross]).mean(0)
        maps.append((m / m.sum()).tolist())
    with open(os.path.join(d, "word_relevance.json"), "w") as f:
        json.dump({"ids": seq, "from": 1, "maps": maps}, f)


def opt_2_7b_parameters():
    """Salesforce/blip2-opt-2.7b's parameter count from its sizes (meta device: no memory), the
    number tests/blip2_parity.rs checks tessera's count from the config against."""
    c = Blip2Config(text_config=dict(model_type="opt", vocab_size=50304, hidden_size=2560,
                                     num_hidden_layers=32, ffn_dim=10240, num_attention_heads=32,
                                     max_position_embeddings=2048, word_embed_proj_dim=2560),
                    image_token_index=50265)
    with torch.device("meta"):
        m = Blip2ForConditionalGeneration(c)
    print("blip2-opt-2.7b parameters:", sum(p.numel() for p in m.parameters()))


if __name__ == "__main__":
    build("blip2_opt", post_norm=False, seed=11)
    build("blip2_opt_postnorm", post_norm=True, seed=21)
    end_to_end()
    opt_alone()
    gpt2_cases()
    opt_2_7b_parameters()
    blip_word_relevance()
