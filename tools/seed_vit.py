"""The seed's PyTorch ViT (the classic recipe), used as the numerical reference."""
import torch
import torch.nn as nn


class PatchEmbedding(nn.Module):
    def __init__(self, img_size, patch_size, in_channels, embed_dim):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.conv2d = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        x = self.conv2d(x)  # B, E, H/P, W/P
        return x.flatten(2).transpose(1, 2)  # B, Np, E


class VisionTransformer(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_channels=3, num_classes=1000, embed_dim=768,
                 depth=12, num_heads=12, mlp_dim=3072, dropout=0.1, norm_first=False):
        super().__init__()
        self.patch_embed = PatchEmbedding(img_size, patch_size, in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model=embed_dim, nhead=num_heads, dim_feedforward=mlp_dim,
                                           dropout=dropout, activation="gelu", batch_first=True,
                                           norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        b = x.size(0)
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x = self.dropout(x + self.pos_embed)
        x = self.encoder(x)
        return self.head(self.norm(x[:, 0]))


def tessera_config(img, patch, ch, classes, dim, depth, heads, mlp, dropout, norm_first):
    """The same model as tessera's config.json."""
    return dict(model_type="tessera-vit", image_size=img, patch_size=patch, num_channels=ch,
                num_classes=classes, hidden_size=dim, num_hidden_layers=depth,
                num_attention_heads=heads, intermediate_size=mlp, dropout=dropout,
                pre_norm=norm_first, layer_norm_eps=1e-5, hidden_act="gelu",
                image_mean=[0.5] * ch, image_std=[0.5] * ch)
