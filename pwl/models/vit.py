"""ViT built by timm, regrouped into PWL blocks: patch embedding -> N groups of layers -> norm + CLS head.
ImageNet-pretrained weights (timm's hub, or a local file) initialise it as the paper fine-tunes ViT-Tiny."""
import re
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers.attention import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..errors import PWLError
from ..schema.families import ViTConfig
from .blocknet import BlockNet
from .registry import register


class ViTEmbed(nn.Module):
    """(Resize to the ViT's input size,) timm's patch embedding + class token + learned position embedding.
    Resizing here keeps the prepared data compact (32x32 uint8) while the ViT sees 224x224, as published."""

    def __init__(self, vit: VisionTransformer, input_size: Optional[int] = None):
        super().__init__()
        self.input_size = input_size
        self.patch_embed, self.cls_token, self.pos_embed = vit.patch_embed, vit.cls_token, vit.pos_embed

    def forward(self, x):
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed


class ViTHead(nn.Module):
    """Final LayerNorm (unless `final_norm` is off), class-token pooling and the linear classifier."""

    def __init__(self, vit: VisionTransformer, final_norm: bool = True):
        super().__init__()
        self.norm, self.fc = vit.norm if final_norm else nn.Identity(), vit.head

    def forward(self, x):
        return self.fc(self.norm(x)[:, 0])


def _timm_state(cfg: ViTConfig) -> tuple[dict, str]:
    """The pretrained state dict in timm's naming, from the local file or timm's hub."""
    if cfg.pretrained_file:
        path = Path(cfg.pretrained_file)
        if not path.is_file():
            raise PWLError(f"pretrained_file {path} does not exist",
                           "point arch.<arch>.<role>.pretrained_file at a timm ViT weights file, or set it to null")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file
                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise PWLError(f"pretrained_file {path} is unreadable ({e})", "download it again") from None
        return state.get("model", state) if isinstance(state, dict) else state, f"file:{path}"
    import timm
    try:
        src = timm.create_model(cfg.pretrained, pretrained=True)
    except Exception as e:
        raise PWLError(
            f"could not fetch timm's pretrained weights {cfg.pretrained!r} ({type(e).__name__}: {str(e)[:200]})",
            f"offline? On a machine with internet run `python -c \"import timm; timm.create_model('{cfg.pretrained}', "
            "pretrained=True)\"` and copy ~/.cache/huggingface here, or download the model's .safetensors and set "
            "arch.<arch>.<role>.pretrained_file=/path/to/model.safetensors") from None
    return src.state_dict(), f"timm:{cfg.pretrained}"


def _layer_map(n_src: int, depths) -> dict[int, str]:
    """Source layer -> our `blocks.<block>.<layer>` name. A shallower model takes evenly spaced layers
    (6 of 12: layers 2, 4, ..., 12), the layer-dropping initialisation of DistilBERT-style students."""
    n = sum(depths)
    if n > n_src:
        raise PWLError(f"the pretrained ViT has {n_src} layers, fewer than the model's {n}",
                       "use a deeper pretrained model or fewer layers (depths)")
    ours = [f"blocks.{b}.{k}" for b, d in enumerate(depths) for k in range(d)]
    return {round((j + 1) * n_src / n) - 1: name for j, name in enumerate(ours)}


def load_pretrained(net: BlockNet, cfg: ViTConfig) -> str:
    """Initialise a PWL ViT from timm ViT weights: layers remapped into blocks, position embedding resampled
    to the token grid, patch filters adapted to the input channels, classifier left fresh."""
    from timm.layers import resample_abs_pos_embed
    from timm.models import adapt_input_conv

    state, source = _timm_state(cfg)
    n_src = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    layers = _layer_map(n_src, cfg.depths)
    ours = {}
    for k, v in state.items():
        if m := re.match(r"blocks\.(\d+)\.(.*)", k):
            if int(m.group(1)) in layers:
                ours[f"{layers[int(m.group(1))]}.{m.group(2)}"] = v
        elif k.startswith(("patch_embed.", "cls_token", "pos_embed")):
            ours["embed." + k] = v
        elif k.startswith("norm.") and cfg.final_norm:
            ours["head." + k] = v
    target = net.state_dict()
    if "embed.pos_embed" not in ours or ours["embed.pos_embed"].shape[-1] != cfg.dim:
        raise PWLError(f"{source} is not a ViT of width {cfg.dim} (no matching pos_embed)",
                       "use pretrained weights of the same embedding dim as the model config")
    grid = net.embed.patch_embed.grid_size
    ours["embed.pos_embed"] = resample_abs_pos_embed(ours["embed.pos_embed"], list(grid), num_prefix_tokens=1)
    w = ours["embed.patch_embed.proj.weight"]
    want = target["embed.patch_embed.proj.weight"].shape
    if w.shape[1] != want[1]:
        w = adapt_input_conv(want[1], w)
    if w.shape[-2:] != want[-2:]:
        from timm.layers import resample_patch_embed
        w = resample_patch_embed(w, list(want[-2:]))
    ours["embed.patch_embed.proj.weight"] = w
    bad = [k for k, v in ours.items() if k not in target or target[k].shape != v.shape]
    if bad:
        raise PWLError(f"{source} does not fit the model: {bad[:3]} ...",
                       "the model config (dim, heads, mlp_ratio) must match the pretrained ViT")
    missing = net.load_state_dict(ours, strict=False).missing_keys
    fresh = [k for k in missing if not k.startswith("head.fc.")]
    if fresh:
        raise PWLError(f"{source} lacks {fresh[:3]} ...", "use a timm VisionTransformer checkpoint")
    return source


class CpuBf16Attention(Attention):
    """timm's attention, except under CPU bfloat16 autocast, where softmax(QK^T)V runs in float32.

    PyTorch's CPU flash-attention kernel is about 5x slower in bf16 than in fp32 (its backward above all: 0.77 s
    against 0.16 s per 6 steps of the default ViT teacher, bench/precision.py's profile), while the projections
    and the MLP gain 2x from AMX. Keeping only attention in fp32 makes the ViT train faster in bf16 than in fp32.
    Anywhere else (float32, CUDA) the forward is timm's own, so float32 results are unchanged."""

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False):
        if not (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")) or self.gate is not None \
                or attn_mask is not None or is_causal or not self.fused_attn:
            return super().forward(x, attn_mask, is_causal)
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(qkv[0]), self.k_norm(qkv[1])
        with torch.autocast("cpu", enabled=False):
            x = F.scaled_dot_product_attention(q.float(), k.float(), qkv[2].float(),
                                               dropout_p=self.attn_drop.p if self.training else 0.)
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.attn_dim))
        return self.proj_drop(self.proj(x))


def on_meta() -> bool:
    """Built under `torch.device("meta")` (the runtime's skeletons, filled from the pack): timm's random init
    would be wasted work there, about 20 ms per ViT on the path to the first answer."""
    return torch.empty(0).is_meta


@register("vit", pretrained=load_pretrained)
def build_vit(cfg: ViTConfig, in_chans: int, num_classes: int, img_size: int) -> BlockNet:
    vit = VisionTransformer(img_size=cfg.input_size or img_size, patch_size=cfg.patch_size, in_chans=in_chans,
                            num_classes=num_classes, embed_dim=cfg.dim, depth=sum(cfg.depths), num_heads=cfg.heads,
                            mlp_ratio=cfg.mlp_ratio, drop_path_rate=cfg.drop_path, class_token=True,
                            global_pool="token", weight_init="skip" if on_meta() else "",
                            attn_layer=CpuBf16Attention)
    layers, blocks, start = list(vit.blocks), [], 0
    for depth in cfg.depths:
        blocks.append(nn.Sequential(*layers[start:start + depth]))
        start += depth
    return BlockNet(ViTEmbed(vit, cfg.input_size), blocks, ViTHead(vit, cfg.final_norm), cfg.block_widths())
