"""Co-attention parity fixtures for tessera: LXMERT (transformers) and a ViLBERT connection layer.

Writes tests/fixtures/lxmert_qa/ (LxmertForQuestionAnswering, save_pretrained's model.safetensors),
tests/fixtures/lxmert_base/ (LxmertModel as `pytorch_model.bin`) and tests/fixtures/vilbert_layer/
(one ViLBERT `BertConnectionLayer`: this file's own PyTorch reference of
facebookresearch/vilbert-multi-task's module, names as its checkpoints hold them), each with
io.safetensors holding the inputs and outputs.

Every parameter is redrawn (LayerNorm weights around 1, everything else N(0, 0.12²)), so no
layer is an identity; the masks pad the tail of one sentence and drop one image region.

    .venv/bin/python tools/make_coattention_fixtures.py
"""
import json
import math
import os

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import LxmertConfig, LxmertForQuestionAnswering, LxmertModel

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("LayerNorm" in name or "layer_norm" in name or "logit_fc.2" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.12 * torch.randn(p.shape, generator=g))


def lxmert_inputs(cfg, g):
    b, t, n = 2, 7, 6
    ids = torch.randint(1, cfg.vocab_size, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 5:] = 0
    types = torch.zeros(b, t, dtype=torch.long)
    types[:, 4:] = 1
    feats = torch.randn(b, n, cfg.visual_feat_dim, generator=g)
    corners = torch.rand(b, n, 2, 2, generator=g).sort(dim=2).values  # x1<x2, y1<y2
    pos = torch.stack([corners[..., 0, 0], corners[..., 0, 1], corners[..., 1, 0], corners[..., 1, 1]], -1)
    vmask = torch.ones(b, n, dtype=torch.long)
    vmask[1, 2] = 0
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types, visual_feats=feats,
                visual_pos=pos.contiguous(), visual_attention_mask=vmask)


def lxmert():
    cfg = LxmertConfig(vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=37,
                       l_layers=2, x_layers=2, r_layers=1, visual_feat_dim=16, visual_pos_dim=4,
                       max_position_embeddings=64, num_qa_labels=5, num_object_labels=7, num_attr_labels=3,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg._attn_implementation = "eager"
    g = torch.Generator().manual_seed(3)
    inputs = lxmert_inputs(cfg, g)
    for name, cls, fmt in [("lxmert_qa", LxmertForQuestionAnswering, "safetensors"),
                           ("lxmert_base", LxmertModel, "bin")]:
        torch.manual_seed(0)
        model = cls(cfg).eval()
        randomise(model, 7 if cls is LxmertModel else 5)
        out_dir = os.path.join(ROOT, name)
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir)
        if fmt == "bin":
            # transformers 5 always writes safetensors; the .bin layout is torch.save of the state dict
            os.remove(os.path.join(out_dir, "model.safetensors"))
            torch.save(model.state_dict(), os.path.join(out_dir, "pytorch_model.bin"))
        with torch.no_grad():
            base = model.lxmert if cls is LxmertForQuestionAnswering else model
            o = base(**inputs, output_attentions=True)
            qa = model(**inputs) if cls is LxmertForQuestionAnswering else None
        io = {k: v.float().contiguous() for k, v in inputs.items()}
        io["language_output"] = o.language_output
        io["vision_output"] = o.vision_output
        io["pooled_output"] = o.pooled_output
        if cls is LxmertForQuestionAnswering:
            io["question_answering_score"] = qa.question_answering_score
        for kind in ["language_attentions", "vision_attentions", "cross_encoder_attentions"]:
            for i, a in enumerate(getattr(o, kind)):
                io[f"{kind}_{i}"] = a.contiguous()
        save_file(io, os.path.join(out_dir, "io.safetensors"))
        print(name, {k: tuple(v.shape) for k, v in io.items() if not k.endswith(tuple("0123456789"))})


# --- ViLBERT's connection layer, written from vilbert-multi-task's module structure -----------

def gelu(x):
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class BiAttention(nn.Module):
    """Stream 1 (vision, width v) and stream 2 (text, width t), each projected to bi channels;
    text queries attend to vision keys/values and vice versa, from the same inputs."""

    def __init__(self, v, t, bi, heads):
        super().__init__()
        self.heads, self.dh = heads, bi // heads
        self.query1, self.key1, self.value1 = nn.Linear(v, bi), nn.Linear(v, bi), nn.Linear(v, bi)
        self.query2, self.key2, self.value2 = nn.Linear(t, bi), nn.Linear(t, bi), nn.Linear(t, bi)

    def split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dh).permute(0, 2, 1, 3)

    def merge(self, x):
        b, h, n, d = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, n, h * d)

    def forward(self, x1, mask1, x2, mask2):
        q1, k1, v1 = self.split(self.query1(x1)), self.split(self.key1(x1)), self.split(self.value1(x1))
        q2, k2, v2 = self.split(self.query2(x2)), self.split(self.key2(x2)), self.split(self.value2(x2))
        # text queries over vision keys (vision mask)
        s1 = q2 @ k1.transpose(-1, -2) / math.sqrt(self.dh) + mask1
        p1 = s1.softmax(-1)
        c1 = self.merge(p1 @ v1)
        # vision queries over text keys (text mask)
        s2 = q1 @ k2.transpose(-1, -2) / math.sqrt(self.dh) + mask2
        p2 = s2.softmax(-1)
        c2 = self.merge(p2 @ v2)
        return c1, c2, (p1, p2)


class BiOutput(nn.Module):
    def __init__(self, v, t, bi):
        super().__init__()
        self.dense1, self.LayerNorm1 = nn.Linear(bi, v), nn.LayerNorm(v, eps=1e-12)
        self.q_dense1 = nn.Linear(bi, v)  # present in the checkpoints, unused
        self.dense2, self.LayerNorm2 = nn.Linear(bi, t), nn.LayerNorm(t, eps=1e-12)
        self.q_dense2 = nn.Linear(bi, t)

    def forward(self, h1, x1, h2, x2):
        return self.LayerNorm1(self.dense1(h1) + x1), self.LayerNorm2(self.dense2(h2) + x2)


class Ffn(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.intermediate = nn.Linear(d, hidden)
        self.output = nn.Linear(hidden, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x):
        return self.norm(self.output(gelu(self.intermediate(x))) + x)


class ConnectionLayer(nn.Module):
    def __init__(self, v, t, bi, heads, v_inter, t_inter):
        super().__init__()
        self.biattention = BiAttention(v, t, bi, heads)
        self.biOutput = BiOutput(v, t, bi)
        self.v_ffn, self.t_ffn = Ffn(v, v_inter), Ffn(t, t_inter)

    def forward(self, x1, mask1, x2, mask2):
        c1, c2, probs = self.biattention(x1, mask1, x2, mask2)
        a1, a2 = self.biOutput(c2, x1, c1, x2)
        return self.v_ffn(a1), self.t_ffn(a2), probs

    def checkpoint(self):
        """The state dict under vilbert-multi-task's names (v_intermediate.dense, v_output.dense,
        v_output.LayerNorm, t_…)."""
        sd = {}
        for k, v in self.state_dict().items():
            for ours, theirs in [("v_ffn.intermediate", "v_intermediate.dense"), ("v_ffn.output", "v_output.dense"),
                                 ("v_ffn.norm", "v_output.LayerNorm"), ("t_ffn.intermediate", "t_intermediate.dense"),
                                 ("t_ffn.output", "t_output.dense"), ("t_ffn.norm", "t_output.LayerNorm")]:
                if k.startswith(ours):
                    k = theirs + k[len(ours):]
            sd["bert.encoder.c_layer.0." + k] = v.contiguous()
        return sd


def vilbert():
    v, t, bi, heads = 24, 16, 32, 4
    torch.manual_seed(0)
    layer = ConnectionLayer(v, t, bi, heads, 40, 37).eval()
    randomise(layer, 11)
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape))
    g = torch.Generator().manual_seed(4)
    x1 = torch.randn(2, 5, v, generator=g)
    x2 = torch.randn(2, 7, t, generator=g)
    m1 = torch.ones(2, 5)
    m1[1, 3] = 0
    m2 = torch.ones(2, 7)
    m2[0, 6:] = 0
    ext = lambda m: ((1.0 - m) * torch.finfo(torch.float32).min)[:, None, None, :]
    with torch.no_grad():
        y1, y2, (p1, p2) = layer(x1, ext(m1), x2, ext(m2))
    out_dir = os.path.join(ROOT, "vilbert_layer")
    os.makedirs(out_dir, exist_ok=True)
    save_file(layer.checkpoint(), os.path.join(out_dir, "model.safetensors"))
    save_file(dict(vision=x1, text=x2, vision_mask=m1, text_mask=m2, vision_out=y1, text_out=y2,
                   text_to_vision=p1.contiguous(), vision_to_text=p2.contiguous()),
              os.path.join(out_dir, "io.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(dict(v_hidden_size=v, hidden_size=t, bi_hidden_size=bi, bi_num_attention_heads=heads,
                       v_intermediate_size=40, intermediate_size=37, prefix="bert.encoder.c_layer.0"), f, indent=2)
    print("vilbert_layer", y1.shape, y2.shape, p1.shape, p2.shape)


if __name__ == "__main__":
    lxmert()
    vilbert()
