"""transformers' DetrForObjectDetection trained on a COCO directory of 128x128 scenes with tessera's small DETR config (AdamW, clip 0.1, batch 8): the class-loss trajectory to compare with tessera's.
    .venv/bin/python tools/detr_torch_compare.py COCO_DIR EPOCHS LR [--normal-queries]
"""
import json, sys, torch, numpy as np
from PIL import Image
from transformers import DetrConfig, DetrForObjectDetection
torch.manual_seed(0)
root = sys.argv[1]; epochs=int(sys.argv[2]); lr=float(sys.argv[3])
d = json.load(open(root + "/annotations.json"))
mean = torch.tensor([0.485,0.456,0.406]).view(3,1,1); std=torch.tensor([0.229,0.224,0.225]).view(3,1,1)
X=[]; T=[]
for im in d["images"]:
    x = torch.from_numpy(np.array(Image.open(root+"/images/"+im["file_name"]).convert("RGB"))).permute(2,0,1).float()/255
    X.append((x-mean)/std)
    anns=[a for a in d["annotations"] if a["image_id"]==im["id"]]
    W,H=im["width"],im["height"]
    T.append({"class_labels": torch.tensor([a["category_id"] for a in anns]),
              "boxes": torch.tensor([[ (a["bbox"][0]+a["bbox"][2]/2)/W, (a["bbox"][1]+a["bbox"][3]/2)/H, a["bbox"][2]/W, a["bbox"][3]/H] for a in anns])})
X=torch.stack(X)
cfg = DetrConfig(d_model=64, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=4,
  encoder_ffn_dim=256, decoder_ffn_dim=256, num_queries=16, auxiliary_loss=True, use_timm_backbone=False, dropout=0.0,
  backbone_config={"model_type":"resnet","embedding_size":16,"hidden_sizes":[64,128,256],"depths":[1,2,2],"layer_type":"bottleneck","out_features":["stage3"]},
  id2label={str(i): f"c{i}" for i in range(7)}, use_pretrained_backbone=False)
m = DetrForObjectDetection(cfg).train()
if len(sys.argv)>4:
    with torch.no_grad(): m.model.query_position_embeddings.weight.normal_()
for n,p in m.named_parameters(): p.requires_grad_(True)
opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=1e-4)
g = torch.Generator().manual_seed(0)
for ep in range(epochs):
    perm = torch.randperm(len(X), generator=g); ce=[]
    for i in range(0, len(X), 8):
        idx = perm[i:i+8]
        out = m(pixel_values=X[idx], pixel_mask=torch.ones(len(idx),128,128,dtype=torch.long), labels=[T[j] for j in idx])
        opt.zero_grad(); out.loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 0.1); opt.step()
        ce.append(out.loss_dict["loss_ce"].item())
    if (ep+1)%6==0: print(ep+1, "ce %.3f"%np.mean(ce), "loss %.3f"%out.loss.item(), flush=True)
