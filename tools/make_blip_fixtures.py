"""Tiny random-init BLIP fixtures (captioning and VQA) for tessera's parity tests.

Writes tests/fixtures/blip_{caption,vqa}/ (config.json + model.safetensors as save_pretrained
writes them) and reference.safetensors / reference.json with inputs, logits and the ids that
transformers' `generate` returns for greedy, beam search and the logits processors.

Every parameter is redrawn (LayerNorm weights included), so no layer is an identity, and the
end-of-text bias is raised so that some sequences stop early (exercising eos and padding).

    tools/fetch_bert_vocab.sh && .venv/bin/python tools/make_blip_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
VOCAB, BOS, SEP, PAD = 99, 97, 98, 0


def config(text_hidden=24):
    return BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4, image_size=30, patch_size=6,
                           layer_norm_eps=1e-5, hidden_act="gelu"),
        text_config=dict(vocab_size=VOCAB, hidden_size=text_hidden, intermediate_size=37,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                         bos_token_id=BOS, sep_token_id=SEP, pad_token_id=PAD, eos_token_id=2,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
        attn_implementation="eager",
    )


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight") or "layer_norm" in name and name.endswith("weight") \
                    or "layernorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        # Stops some sequences after a few tokens.
        model.text_decoder.cls.predictions.bias[SEP] += 2.5


def gen(model, **kw):
    out = model.generate(**kw)
    return out.tolist()


def caption():
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config()).eval()
    randomise(model, 1)
    d = os.path.join(ROOT, "blip_caption")
    model.save_pretrained(d)
    g = torch.Generator().manual_seed(2)
    pixels = torch.randn(2, 3, 30, 30, generator=g)
    # Prompts of different lengths, left padded: [bos, prompt...] (what `generate` passes on).
    prompt = torch.tensor([[PAD, PAD, BOS, 11, 12], [BOS, 21, 22, 23, 24]])
    mask = (prompt != PAD).long()
    # Teacher-forced logits with right padding, as training sees them.
    tf_ids = torch.tensor([[BOS, 5, 6, 7, SEP, PAD, PAD], [BOS, 8, 9, 10, 11, 12, SEP]])
    tf_mask = (tf_ids != PAD).long()
    tf_mask[:, 0] = 1
    with torch.no_grad():
        out = model(pixel_values=pixels, input_ids=tf_ids, attention_mask=tf_mask)
        vis = model.vision_model(pixel_values=pixels)
        image_embeds = vis.last_hidden_state
        enc_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)

        def decode(**kw):
            return model.text_decoder.generate(
                input_ids=prompt, attention_mask=mask, eos_token_id=SEP, pad_token_id=PAD,
                encoder_hidden_states=image_embeds, encoder_attention_mask=enc_mask, **kw).tolist()

        runs = {
            "greedy": dict(do_sample=False, max_new_tokens=8),
            "greedy_penalised": dict(do_sample=False, max_new_tokens=8, repetition_penalty=1.5,
                                     min_new_tokens=4),
            "beam3": dict(do_sample=False, num_beams=3, max_new_tokens=8),
            "beam4_early": dict(do_sample=False, num_beams=4, max_new_tokens=9, early_stopping=True,
                                length_penalty=0.6),
            "beam2_never": dict(do_sample=False, num_beams=2, max_new_tokens=7,
                                early_stopping="never", length_penalty=1.5, num_return_sequences=2),
        }
        ref = {"prompt": prompt.tolist(), "prompt_mask": mask.tolist()}
        for k, kw in runs.items():
            ref[k] = {"settings": {a: b for a, b in kw.items() if a != "do_sample"}, "ids": decode(**kw)}
        # BlipForConditionalGeneration.generate itself: unconditional (no prompt), batch of 2.
        ref["unconditional"] = {"settings": {"max_new_tokens": 8},
                                "ids": gen(model, pixel_values=pixels, max_new_tokens=8)}
        ref["unconditional_beam"] = {"settings": {"max_new_tokens": 8, "num_beams": 3},
                                     "ids": gen(model, pixel_values=pixels, max_new_tokens=8, num_beams=3)}
    save_file({"pixel_values": pixels.contiguous(), "tf_ids": tf_ids, "tf_mask": tf_mask,
               "logits": out.logits.contiguous(), "image_embeds": image_embeds.contiguous(),
               "pooled": vis.pooler_output.contiguous()},
              os.path.join(d, "reference.safetensors"))
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


def vqa():
    torch.manual_seed(0)
    # The answer decoder cross-attends to the question encoder's states, so BLIP VQA needs equal
    # widths (as the real checkpoints have).
    model = BlipForQuestionAnswering(config(text_hidden=32)).eval()
    randomise(model, 3)
    d = os.path.join(ROOT, "blip_vqa")
    model.save_pretrained(d)
    g = torch.Generator().manual_seed(4)
    pixels = torch.randn(2, 3, 30, 30, generator=g)
    q = torch.tensor([[101 % VOCAB, 31, 32, SEP, PAD, PAD], [101 % VOCAB, 41, 42, 43, 44, SEP]])
    qmask = (q != PAD).long()
    ans = torch.tensor([[BOS, 51, 52, SEP], [BOS, 61, SEP, PAD]])
    amask = (ans != PAD).long()
    with torch.no_grad():
        vis = model.vision_model(pixel_values=pixels).last_hidden_state
        qe = model.text_encoder(input_ids=q, attention_mask=qmask, encoder_hidden_states=vis,
                                encoder_attention_mask=torch.ones(vis.shape[:-1], dtype=torch.long)).last_hidden_state
        logits = model.text_decoder(input_ids=ans, attention_mask=amask, encoder_hidden_states=qe,
                                    encoder_attention_mask=qmask).logits
        ref = {"question": q.tolist(), "question_mask": qmask.tolist()}
        for k, kw in {"greedy": dict(max_new_tokens=6),
                      "beam3": dict(max_new_tokens=6, num_beams=3)}.items():
            ref[k] = {"settings": kw, "ids": gen(model, input_ids=q, attention_mask=qmask,
                                                 pixel_values=pixels, **kw)}
    save_file({"pixel_values": pixels.contiguous(), "question_embeds": qe.contiguous(),
               "answer_ids": ans, "answer_mask": amask, "logits": logits.contiguous()},
              os.path.join(d, "reference.safetensors"))
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)



WORDS = ("a picture of the an on in with and two red blue green cat cats dog sitting couch "
         "circle square triangle left right above below is what colour shape how many there "
         "photo man woman riding frisbee grass park table small large ##s ##ing ##ed . , ? ! ' "
         "- 0 1 2 3 yes no").split()


def tokenizer_and_processor(d):
    """A BERT WordPiece tokenizer over the fixture's 99 ids ([DEC] = bos 97, [SEP] 98), and
    BlipImageProcessor for 30×30 inputs, saved as BlipProcessor saves them."""
    from transformers import BertTokenizerFast, BlipImageProcessor, BlipProcessor
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[MASK]"] + WORDS
    vocab += [f"[unused{i}]" for i in range(97 - len(vocab))] + ["[DEC]", "[SEP]"]
    assert len(vocab) == VOCAB
    # transformers 5 takes the vocabulary itself (`vocab_file` is ignored).
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True,
                            bos_token="[DEC]")
    ip = BlipImageProcessor(size={"height": 30, "width": 30})
    proc = BlipProcessor(image_processor=ip, tokenizer=tok)
    proc.save_pretrained(d)
    return proc


def end_to_end():
    """Image file -> processor -> generate -> decoded text, as a user runs BLIP."""
    from PIL import Image
    import numpy as np
    out = {}
    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 255, (41, 53, 3), dtype=np.uint8))
    for name, cls in [("blip_caption", BlipForConditionalGeneration), ("blip_vqa", BlipForQuestionAnswering)]:
        d = os.path.join(ROOT, name)
        proc = tokenizer_and_processor(d)
        img.save(os.path.join(d, "image.png"))
        model = cls.from_pretrained(d, attn_implementation="eager").eval()
        runs = {}
        with torch.no_grad():
            if name == "blip_caption":
                for prompt in [None, "a picture of"]:
                    for beams in [1, 3]:
                        inputs = proc(images=img, text=prompt, return_tensors="pt")
                        ids = model.generate(**inputs, max_new_tokens=8, num_beams=beams)
                        runs[f"{prompt}|{beams}"] = {
                            "pixel_values": inputs["pixel_values"].flatten().tolist()[:16],
                            "ids": ids[0].tolist(),
                            "text": proc.decode(ids[0], skip_special_tokens=True)}
            else:
                for q in ["what colour is the cat?", "how many dogs are there"]:
                    inputs = proc(images=img, text=q, return_tensors="pt")
                    ids = model.generate(**inputs, max_new_tokens=6)
                    runs[q] = {"ids": ids[0].tolist(),
                               "text": proc.decode(ids[0], skip_special_tokens=True)}
        with open(os.path.join(d, "end_to_end.json"), "w") as f:
            json.dump(runs, f, indent=1)
        # Tokenizer identity: ids and decoded text on assorted strings.
        strings = ["a picture of", "A Picture OF two cats!", "what colour is the cat?",
                   "the dog's frisbee, on grass.", "unknownword a", "  spaces   here ",
                   "sitting riding", "cats-dogs", "2 red circles left of 3 blue squares",
                   "yes", "no?", "", "Ä picture", "a\tpicture\nof", "[SEP] a [CLS]"]
        tok = proc.tokenizer
        cases = []
        for s in strings:
            for special in [True, False]:
                ids = tok(s, add_special_tokens=special)["input_ids"]
                cases.append({"text": s, "special": special, "ids": ids,
                              "decoded": tok.decode(ids, skip_special_tokens=True)})
        with open(os.path.join(d, "tokenizer_cases.json"), "w") as f:
            json.dump(cases, f, indent=1)



def bert_cases():
    """bert-base-uncased (BLIP's text side) through transformers' BertTokenizerFast built from
    vocab.txt alone (tools/fetch_bert_vocab.sh), on assorted strings: the ids and decoded text
    tessera's tokenizer.json path must reproduce."""
    from transformers import BertTokenizerFast
    path = os.path.join(ROOT, "..", "..", "assets", "bert-base-uncased", "vocab.txt")
    vocab = {t: i for i, t in enumerate(open(path, encoding="utf-8").read().split("\n")[:-1])}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    strings = [
        "a picture of", "a picture of two cats sleeping on a couch",
        "How many cats are in the picture?", "what is the man riding?", "There's a dog!",
        "The quick brown fox jumps over the lazy dog.", "don't stop, won't stop", "e-mail: me@example.com",
        "3.14159 and 1,000,000", "naïve café résumé", "Übermäßig GROSS", "日本語のテキスト",
        "中文字符 mixed with english", "Ελληνικά", "Привет, мир", "مرحبا بالعالم", "emoji 😀 🐱",
        "tabs\tand\nnewlines", "   leading and trailing   ", "", "[CLS] [SEP] [MASK] [PAD]",
        "unbelievably antidisestablishmentarianism", "COVID-19 vaccines", "#hashtag @mention",
        "a (parenthesised) remark; a [bracketed] one", "ellipsis... and — dashes – here",
        "\"quoted\" 'single'", "x" * 120, "a red circle left of a blue square",
        "frisbee frisbees frisbeeing", "Salesforce/blip-image-captioning-base", "ＦＵＬＬＷＩＤＴＨ",
        "control\u0007char", "zero\u200bwidth", "combining e\u0301", "$100 + 50% = ?",
    ]
    cases = []
    for s in strings:
        for special in [True, False]:
            ids = tok(s, add_special_tokens=special)["input_ids"]
            cases.append({"text": s, "special": special, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=True)})
    with open(os.path.join(ROOT, "bert_tokenizer_cases.json"), "w") as f:
        json.dump(cases, f, indent=0, ensure_ascii=False)
    print(len(cases), "bert cases")


if __name__ == "__main__":
    # The models first: end_to_end reloads what caption() and vqa() saved.
    caption()
    vqa()
    end_to_end()
    bert_cases()
