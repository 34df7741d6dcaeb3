"""ViT built by timm, regrouped into PWL blocks: patch embedding -> N groups of layers -> norm + CLS head."""
from typing import Literal, Optional

import torch
from pydantic import model_validator
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .blocknet import BlockNet
from .common import FamilyConfig
from .registry import register


class ViTConfig(FamilyConfig):
    family: Literal["vit"] = "vit"
    patch_size: int = 16
    dim: int = 192
    heads: int = 3
    mlp_ratio: float = 4.0
    depths: tuple[int, ...] = (2, 2, 2, 2, 2, 2)  # transformer layers per PWL block (ViT-Tiny teacher)
    drop_path: float = 0.0
    pretrained_file: Optional[str] = None  # local timm weights (.safetensors/.pth) to start from

    @model_validator(mode="after")
    def _dims(self):
        if self.dim % self.heads:
            raise ValueError(f"vit: dim {self.dim} is not divisible by heads {self.heads}")
        return self

    def block_widths(self) -> list[int]:
        return [self.dim] * self.num_blocks


class ViTEmbed(nn.Module):
    """timm's patch embedding + class token + learned position embedding."""

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.patch_embed, self.cls_token, self.pos_embed = vit.patch_embed, vit.cls_token, vit.pos_embed

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed


class ViTHead(nn.Module):
    """Final LayerNorm, class-token pooling and the linear classifier."""

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        self.norm, self.fc = vit.norm, vit.head

    def forward(self, x):
        return self.fc(self.norm(x)[:, 0])


def load_pretrained(vit: VisionTransformer, path: str) -> None:
    """Load timm ViT weights from a local file, skipping the classifier and resizing position embeddings."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint_filter_fn(state, vit)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    vit.load_state_dict(state, strict=False)


@register("vit", ViTConfig)
def build_vit(cfg: ViTConfig, in_chans: int, num_classes: int, img_size: int) -> BlockNet:
    if img_size % cfg.patch_size:
        raise ValueError(f"vit: image size {img_size} is not divisible by patch size {cfg.patch_size}")
    vit = VisionTransformer(img_size=img_size, patch_size=cfg.patch_size, in_chans=in_chans, num_classes=num_classes,
                            embed_dim=cfg.dim, depth=sum(cfg.depths), num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio,
                            drop_path_rate=cfg.drop_path, class_token=True, global_pool="token")
    if cfg.pretrained_file:
        load_pretrained(vit, cfg.pretrained_file)
    layers, blocks, start = list(vit.blocks), [], 0
    for depth in cfg.depths:
        blocks.append(nn.Sequential(*layers[start:start + depth]))
        start += depth
    return BlockNet(ViTEmbed(vit), blocks, ViTHead(vit), cfg.block_widths())
