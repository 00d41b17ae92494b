"""Fixtures for the detection pieces that have a reference: scipy's linear_sum_assignment
(DETR's Hungarian matcher), transformers' ForObjectDetectionLoss (with and without auxiliary
losses, with gradients) and pycocotools' COCOeval (box mAP).

    .venv/bin/python tools/make_detection_fixtures.py   # writes tests/fixtures/detection/*.json
"""
import contextlib
import io
import json
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.optimize import linear_sum_assignment

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "detection")
rng = np.random.default_rng(16)


def enc(m):
    # JSON has no infinity: +inf is null.
    return [None if np.isinf(v) else float(v) for v in m.ravel()]


def lsap_cases():
    cases = []
    shapes = [(1, 1), (2, 3), (3, 2), (4, 4), (5, 7), (7, 5), (8, 8), (1, 6), (6, 1), (0, 3), (3, 0)]
    shapes += [(100, 3), (100, 12), (12, 100), (30, 30)]
    for i, (r, c) in enumerate(shapes * 2):
        kind = i // len(shapes)  # 0: uniform floats, 1: small integers (ties)
        m = rng.random((r, c)) if kind == 0 else rng.integers(0, 4, (r, c)).astype(float)
        for maximize in (False, True):
            ri, ci = linear_sum_assignment(m, maximize=maximize)
            cases.append({"rows": r, "cols": c, "cost": enc(m), "maximize": maximize,
                          "row_ind": ri.tolist(), "col_ind": ci.tolist()})
    # Forbidden pairs that still leave a full assignment.
    for r, c in [(4, 4), (5, 8), (8, 5)]:
        m = rng.random((r, c))
        for k in range(min(r, c)):
            m[k, (k + 1) % c] = np.inf
        ri, ci = linear_sum_assignment(m)
        cases.append({"rows": r, "cols": c, "cost": enc(m), "maximize": False,
                      "row_ind": ri.tolist(), "col_ind": ci.tolist()})
    return cases


def box(w_img, h_img, size):
    w = max(1.0, size * rng.uniform(0.6, 1.4))
    h = max(1.0, size * rng.uniform(0.6, 1.4))
    x = rng.uniform(0, max(1.0, w_img - w))
    y = rng.uniform(0, max(1.0, h_img - h))
    return [round(float(x), 2), round(float(y), 2), round(float(w), 2), round(float(h), 2)]


def scenario(n_images, cats, per_image, fp_rate, miss_rate, crowd_rate, many=False, tie_scores=False,
             empty_cat=False):
    images, anns, dets = [], [], []
    aid = 1
    for i in range(n_images):
        iid = 3 * i + 7  # not contiguous, not sorted in the file below
        W, H = int(rng.integers(200, 640)), int(rng.integers(200, 480))
        images.append({"id": iid, "width": W, "height": H, "file_name": f"{iid}.jpg"})
        n = 0 if i % 5 == 4 else int(rng.integers(1, per_image + 1))
        for _ in range(n):
            size = float(rng.choice([12, 24, 40, 70, 110, 160]))
            b = box(W, H, size)
            cat = int(rng.choice(cats))
            crowd = int(rng.random() < crowd_rate)
            area = round(b[2] * b[3] * float(rng.uniform(0.7, 1.0)), 2)  # a segmentation's area
            anns.append({"id": aid, "image_id": iid, "category_id": cat, "bbox": b, "area": area, "iscrowd": crowd})
            aid += 1
            if rng.random() > miss_rate:
                j = [v + float(rng.normal(0, 0.08 * max(b[2], b[3]))) for v in b]
                j[2], j[3] = max(0.5, j[2]), max(0.5, j[3])
                s = float(rng.choice([0.5, 0.7, 0.9])) if tie_scores else float(rng.random())
                dcat = cat if rng.random() > 0.1 else int(rng.choice(cats))
                dets.append({"image_id": iid, "category_id": dcat, "bbox": [round(v, 3) for v in j], "score": round(s, 4)})
        for _ in range(int(rng.poisson(fp_rate))):
            s = float(rng.choice([0.5, 0.7, 0.9])) if tie_scores else float(rng.random())
            dets.append({"image_id": iid, "category_id": int(rng.choice(cats)), "bbox": box(W, H, float(rng.choice([15, 50, 120]))), "score": round(s, 4)})
        if many and i == 0:
            for _ in range(130):
                dets.append({"image_id": iid, "category_id": int(cats[0]), "bbox": box(W, H, 30), "score": round(float(rng.random()), 4)})
    cat_list = [{"id": c, "name": f"class{c}"} for c in cats]
    if empty_cat:
        cat_list.append({"id": 99, "name": "never"})
        dets.append({"image_id": images[0]["id"], "category_id": 99, "bbox": [1, 1, 10, 10], "score": 0.9})
    images = images[::-1]
    return {"images": images, "annotations": anns, "categories": cat_list}, dets


def coco_stats(gt, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = json.loads(json.dumps(gt))
        c.createIndex()
        d = c.loadRes(json.loads(json.dumps(dets))) if dets else COCO()
        if not dets:
            d.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            d.createIndex()
        e = COCOeval(c, d, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return [float(x) for x in e.stats]


def loss_cases():
    import types

    import torch
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    torch.manual_seed(16)
    B, Q, C, L = 3, 12, 4, 3
    counts = [3, 0, 5]
    targets = []
    for n in counts:
        cxcy = torch.rand(n, 2) * 0.6 + 0.2
        wh = torch.rand(n, 2) * 0.35 + 0.05
        targets.append({"class_labels": torch.randint(0, C, (n,)), "boxes": torch.cat([cxcy, wh], 1)})
    out = []
    for aux in (False, True):
        cfg = types.SimpleNamespace(num_labels=C, class_cost=1, bbox_cost=5, giou_cost=2, eos_coefficient=0.1,
                                    bbox_loss_coefficient=5, giou_loss_coefficient=2, auxiliary_loss=aux,
                                    decoder_layers=L)
        logits = (torch.randn(L, B, Q, C + 1) * 2).requires_grad_()
        raw = torch.randn(L, B, Q, 4)
        boxes = torch.sigmoid(raw).detach().requires_grad_()
        loss, terms, _ = ForObjectDetectionLoss(logits[-1], targets, "cpu", boxes[-1], cfg,
                                                outputs_class=logits, outputs_coord=boxes)
        loss.backward()
        from transformers.loss.loss_for_object_detection import HungarianMatcher
        m = HungarianMatcher(1, 5, 2)({"logits": logits[-1].detach(), "pred_boxes": boxes[-1].detach()}, targets)
        out.append({"aux": aux, "layers": L, "batch": B, "queries": Q, "num_labels": C,
                    "logits": logits.detach().ravel().tolist(), "boxes": boxes.detach().ravel().tolist(),
                    "targets": [{"class_labels": t["class_labels"].tolist(), "boxes": t["boxes"].tolist()} for t in targets],
                    "matching": [[i.tolist(), j.tolist()] for i, j in m],
                    "terms": {k: float(v) for k, v in terms.items()}, "total": float(loss),
                    "grad_logits": logits.grad.ravel().tolist(), "grad_boxes": boxes.grad.ravel().tolist()})
    return out


PROCESSOR_IMAGES = ["chelsea.png", "china.jpg", "rocket.jpg", "coffee_exif6.jpg"]
PROCESSOR_CONFIGS = {
    # the longest-edge cap applies to the 4:3 images, not to the others
    "capped": dict(size={"shortest_edge": 32, "longest_edge": 40}),
    "shortest_only": dict(size={"shortest_edge": 28, "longest_edge": 1333}),
    # the legacy spelling: an int size and max_size
    "legacy_int": dict(size=30, max_size=36),
    "bicubic_no_normalize": dict(size={"shortest_edge": 24, "longest_edge": 34}, resample=3, do_normalize=False),
}


def processor_cases():
    import torch
    from safetensors.torch import save_file
    from transformers.image_utils import load_image
    from transformers.models.detr import DetrImageProcessor
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    fix = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "processor")
    images = [load_image(os.path.join(fix, f)) for f in PROCESSOR_IMAGES]
    tensors, meta = {}, {"images": PROCESSOR_IMAGES, "configs": {}}
    for name, kw in PROCESSOR_CONFIGS.items():
        meta["configs"][name] = {k: v for k, v in kw.items()}
        for backend, cls in (("torchvision", DetrImageProcessor), ("pil", DetrImageProcessorPil)):
            out = cls(**kw)(images, return_tensors="pt")
            tensors[f"{name}.{backend}.pixel_values"] = out["pixel_values"].contiguous()
            tensors[f"{name}.{backend}.pixel_mask"] = out["pixel_mask"].to(torch.uint8).contiguous()
    save_file(tensors, os.path.join(OUT, "processor.safetensors"))
    with open(os.path.join(OUT, "processor.json"), "w") as f:
        json.dump(meta, f, indent=1)

    # post_process_object_detection on random outputs
    import types

    torch.manual_seed(5)
    logits = torch.randn(2, 7, 6) * 2
    boxes = torch.sigmoid(torch.randn(2, 7, 4))
    proc = DetrImageProcessor()
    outs = types.SimpleNamespace(logits=logits, pred_boxes=boxes)
    cases = []
    for threshold, sizes in ((0.3, [(64, 96), (64, 64)]), (0.0, None), (0.6, [(480, 640), (800, 1066)])):
        res = proc.post_process_object_detection(outs, threshold=threshold, target_sizes=sizes)
        cases.append({"threshold": threshold, "target_sizes": sizes,
                      "results": [{k: v.tolist() for k, v in r.items()} for r in res]})
    with open(os.path.join(OUT, "postprocess.json"), "w") as f:
        json.dump({"logits": logits.ravel().tolist(), "boxes": boxes.ravel().tolist(), "cases": cases}, f)


def randomize_bn(model):
    import torch
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def backbone_cases():
    """HF ResNetBackbone (bottleneck and basic) and timm's ResNet, tiny and random, with
    random batch-norm statistics: weights under their checkpoint names, and every stage's
    output on a [2, 3, 64, 96] batch."""
    import timm.models.resnet as tr
    import torch
    from safetensors.torch import save_file
    from transformers import ResNetBackbone, ResNetConfig

    torch.manual_seed(7)
    x = torch.randn(2, 3, 64, 96)
    tensors = {"input": x}
    configs = {
        "hf_bottleneck": dict(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], layer_type="bottleneck"),
        "hf_basic": dict(embedding_size=8, hidden_sizes=[8, 12], depths=[2, 1], layer_type="basic"),
        "hf_bottleneck_ds": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], layer_type="bottleneck",
                                 downsample_in_bottleneck=True, downsample_in_first_stage=True),
    }
    for name, kw in configs.items():
        n = len(kw["hidden_sizes"])
        m = ResNetBackbone(ResNetConfig(out_features=[f"stage{i + 1}" for i in range(n)], **kw)).eval()
        randomize_bn(m)
        with torch.no_grad():
            maps = m(x).feature_maps
        for k, v in m.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                tensors[f"{name}/{k}"] = v.contiguous()
        for i, f in enumerate(maps):
            tensors[f"{name}.out{i}"] = f.contiguous()
    # timm's plain stem is always 64 wide.
    t = tr.ResNet(block=tr.Bottleneck, layers=[1, 1, 2, 1], channels=(2, 4, 6, 8), num_classes=0).eval()
    randomize_bn(t)
    with torch.no_grad():
        h = t.maxpool(t.act1(t.bn1(t.conv1(x))))
        for i, layer in enumerate([t.layer1, t.layer2, t.layer3, t.layer4]):
            h = layer(h)
            tensors[f"timm.out{i}"] = h.contiguous()
    for k, v in t.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            tensors[f"timm/{k}"] = v.contiguous()
    save_file(tensors, os.path.join(OUT, "resnet.safetensors"))
    with open(os.path.join(OUT, "resnet.json"), "w") as f:
        json.dump({"configs": configs, "timm": dict(embedding_size=64, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1])}, f, indent=1)


def detr_cases():
    """DetrForObjectDetection, tiny and random (batch norms and query positions randomised),
    with HF backbones (bottleneck; basic with learned positions and auxiliary loss), on a padded batch: image 1's right 32 columns are padding. Saved
    with save_pretrained (transformers' on-disk names) plus inputs and outputs."""
    import torch
    from safetensors.torch import save_file
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    common = dict(d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=4,
                  encoder_ffn_dim=37, decoder_ffn_dim=37, num_queries=7, num_labels=5, dropout=0.0,
                  attn_implementation="eager", use_pretrained_backbone=False)
    variants = {
        "hf": dict(use_timm_backbone=False, backbone=None, backbone_config=ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="bottleneck",
            out_features=["stage4"])),
        "hf_aux_learned": dict(use_timm_backbone=False, backbone=None, auxiliary_loss=True, position_embedding_type="learned",
                               backbone_config=ResNetConfig(embedding_size=8, hidden_sizes=[8, 12], depths=[1, 1],
                                                            layer_type="basic", out_features=["stage2"])),
        # timm layouts as transformers 5 writes them (`backbone_config` of model_type
        # timm_backbone; on disk `model.backbone.conv_encoder.model.conv1…`), narrowed with
        # timm's `channels` argument so the fixture stays small; DC5 = dilation (output_stride 16).
        "timm": dict(backbone_config=dict(model_type="timm_backbone", backbone="resnet50", out_indices=[1, 2, 3, 4],
                                          features_only=True, use_pretrained_backbone=False, num_channels=3),
                     _channels=(4, 8, 12, 16)),
        "timm_dc5": dict(backbone_config=dict(model_type="timm_backbone", backbone="resnet18", out_indices=[1, 2, 3, 4],
                                              features_only=True, use_pretrained_backbone=False, num_channels=3,
                                              output_stride=16),
                         _channels=(8, 12, 16, 24)),
    }
    torch.manual_seed(11)
    x = torch.randn(2, 3, 64, 96)
    mask = torch.ones(2, 64, 96, dtype=torch.long)
    mask[1, :, 64:] = 0
    for name, kw in variants.items():
        kw = dict(kw)
        channels = kw.pop("_channels", None)
        torch.manual_seed(12)
        m = DetrForObjectDetection(DetrConfig(**common, **kw)).eval()
        if channels is not None:
            # load_backbone passes no create_model arguments: build the narrow timm net the way
            # TimmBackbone does (with `channels`), freeze its norms as DetrConvEncoder does, and
            # give the input projection the new width.
            from transformers.models.detr.modeling_detr import replace_batch_norm
            from transformers.models.timm_backbone.modeling_timm_backbone import TimmBackbone

            tb = TimmBackbone(m.config.backbone_config, channels=channels)
            replace_batch_norm(tb)
            m.model.backbone.model = tb._backbone
            m.model.input_projection = torch.nn.Conv2d(tb.channels[-1], m.config.d_model, 1)
            m.eval()
        randomize_bn(m)
        with torch.no_grad():
            for mod in m.modules():
                if type(mod).__name__ == "DetrFrozenBatchNorm2d":
                    n = mod.weight.numel()
                    mod.weight.copy_(torch.rand(n) + 0.5)
                    mod.bias.copy_(torch.randn(n) * 0.1)
                    mod.running_mean.copy_(torch.randn(n) * 0.1)
                    mod.running_var.copy_(torch.rand(n) + 0.5)
            m.model.query_position_embeddings.weight.normal_()
            # DETR's init leaves biases at 0 and the box head nearly flat (every box ≈ 0.5):
            # larger random linears and biases, so boxes and classes differ per query.
            for mod in m.modules():
                if isinstance(mod, torch.nn.Linear):
                    mod.weight.normal_(0, 1.5 / mod.in_features ** 0.5)
                    mod.bias.normal_(0, 0.5)
                elif isinstance(mod, torch.nn.Conv2d) and mod.bias is not None:
                    mod.bias.normal_(0, 0.5)
                elif isinstance(mod, torch.nn.LayerNorm):
                    mod.weight.copy_(torch.rand_like(mod.weight) + 0.5)
                    mod.bias.normal_(0, 0.2)
            out = m(pixel_values=x, pixel_mask=mask, output_hidden_states=False)
        d = os.path.join(OUT, f"detr_{name}")
        m.save_pretrained(d)
        if channels is not None:
            # The width is a create_model argument transformers' config cannot carry; tessera
            # reads it from backbone_config.channels (timm's argument name).
            with open(os.path.join(d, "config.json")) as f:
                c = json.load(f)
            c["backbone_config"]["channels"] = list(channels)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(c, f, indent=2)
        t = {"pixel_values": x, "pixel_mask": mask.to(torch.uint8), "logits": out.logits, "pred_boxes": out.pred_boxes,
             "encoder_last_hidden_state": out.encoder_last_hidden_state, "last_hidden_state": out.last_hidden_state}
        with torch.no_grad():
            # The last decoder layer's cross-attention (what `tessera explain` draws per query).
            t["cross_attention_last"] = m(pixel_values=x, pixel_mask=mask, output_attentions=True).cross_attentions[-1]
        if m.config.auxiliary_loss:
            # transformers computes the auxiliary heads only with labels; the same heads on the
            # decoder's intermediate (normed) states, as its loss path does.
            with torch.no_grad():
                inter = m.model(pixel_values=x, pixel_mask=mask).intermediate_hidden_states
                for i in range(inter.shape[0] - 1):
                    t[f"aux{i}.logits"] = m.class_labels_classifier(inter[i])
                    t[f"aux{i}.pred_boxes"] = m.bbox_predictor(inter[i]).sigmoid()
        save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(d, "expected.safetensors"))
        if name == "hf":
            # The whole pipeline on a real photo: processor (saved with the model), model,
            # post-processing to the photo's own size.
            from transformers.image_utils import load_image
            from transformers.models.detr import DetrImageProcessor

            proc = DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 100})
            proc.save_pretrained(d)
            img = load_image(os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "processor", "china.jpg"))
            with torch.no_grad():
                o = m(**proc(img, return_tensors="pt"))
            r = proc.post_process_object_detection(o, threshold=0.0, target_sizes=[(img.height, img.width)])[0]
            with open(os.path.join(d, "pipeline.json"), "w") as f:
                json.dump({"image": "china.jpg", **{k: v.tolist() for k, v in r.items()}}, f)


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "lsap.json"), "w") as f:
        json.dump(lsap_cases(), f)
    with open(os.path.join(OUT, "detr_loss.json"), "w") as f:
        json.dump(loss_cases(), f)
    processor_cases()
    backbone_cases()
    detr_cases()
    cases = []
    specs = {
        "mixed": dict(n_images=20, cats=[1, 2, 5], per_image=6, fp_rate=2, miss_rate=0.15, crowd_rate=0.08),
        "ties_and_empty_category": dict(n_images=12, cats=[3, 4], per_image=5, fp_rate=1, miss_rate=0.2, crowd_rate=0.0,
                                        tie_scores=True, empty_cat=True),
        "over_100_detections": dict(n_images=6, cats=[1, 2], per_image=8, fp_rate=3, miss_rate=0.1, crowd_rate=0.1, many=True),
        "perfect": dict(n_images=5, cats=[1], per_image=4, fp_rate=0, miss_rate=0.0, crowd_rate=0.0),
    }
    for name, spec in specs.items():
        gt, dets = scenario(**spec)
        if name == "perfect":
            dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                    for a in gt["annotations"]]
        cases.append({"name": name, "gt": gt, "dets": dets, "stats": coco_stats(gt, dets)})
    gt, _ = scenario(n_images=4, cats=[1], per_image=3, fp_rate=0, miss_rate=0, crowd_rate=0)
    cases.append({"name": "no_detections", "gt": gt, "dets": [], "stats": coco_stats(gt, [])})
    with open(os.path.join(OUT, "coco_eval.json"), "w") as f:
        json.dump(cases, f)
    for c in cases:
        print(c["name"], len(c["gt"]["annotations"]), "gt", len(c["dets"]), "dets", [round(s, 4) for s in c["stats"]])


if __name__ == "__main__":
    main()
