"""Model families: registry, block structure, shapes, build-time checks."""
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from conftest import IN_CHANS, NUM_CLASSES, PAIRS, arch_config, batch, make_net
from pwl.build import freeze
from pwl.mixing import build_mixed, distilled_parts
from pwl.errors import PWLError
from pwl.evaluation import block_bytes
from pwl.models import build_model, families, get_family, init_pretrained, parse_model_config
from pwl.models.mobilenet import InvertedResidual
from pwl.schema.families import MobileNetConfig, ResNetConfig, VGGConfig, ViTConfig


def test_registry_lists_the_families():
    assert families() == ["mobilenet", "resnet", "vgg", "vit"]


def test_unknown_family_is_pwl_error():
    with pytest.raises(PWLError, match="unknown architecture family 'nope'"):
        get_family("nope")
    with pytest.raises(PWLError, match="unknown architecture family"):
        parse_model_config({"family": "nope"})


def test_model_config_without_family_is_pwl_error():
    with pytest.raises(PWLError, match="no 'family'"):
        parse_model_config({"widths": [1]})


def test_published_default_layouts():
    assert VGGConfig().widths == (64, 128, 256, 512, 512) and VGGConfig().depths == (2, 2, 3, 3, 3)
    assert ResNetConfig().widths == (32, 64, 128, 256) and ResNetConfig().depths == (3, 4, 6, 3)
    assert ResNetConfig().stem_width == 64
    v = ViTConfig()
    assert (v.patch_size, v.dim, v.heads, v.mlp_ratio, v.depths) == (16, 192, 3, 4.0, (2,) * 6)
    assert v.block_widths() == [192] * 6


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_shapes_and_block_widths(family, role):
    pair = PAIRS[family]
    raw = pair[role]
    net = make_net(raw, pair["img"])
    x, _ = batch(family, n=2)
    net.eval()
    feats = net.features(x)
    assert net.num_blocks == len(raw["depths"]) == len(feats)
    widths = [raw["dim"]] * len(raw["depths"]) if family == "vit" else raw["widths"]
    assert net.block_widths == widths
    for f, w in zip(feats, widths):
        assert (f.shape[-1] if family == "vit" else f.shape[1]) == w
    if family == "vit":  # tokens: CLS + (img/patch)^2
        assert feats[0].shape == (2, 1 + (pair["img"] // raw["patch_size"]) ** 2, raw["dim"])
    else:
        assert feats[0].dim() == 4
    out = net(x)
    assert out.shape == (2, NUM_CLASSES)
    assert torch.equal(out, net.head(feats[-1]))


def test_depths_set_layers_per_block(family):
    pair = PAIRS[family]
    t, s = make_net(pair["teacher"], pair["img"]), make_net(pair["student"], pair["img"])
    assert sum(p.numel() for p in t.parameters()) > sum(p.numel() for p in s.parameters())
    for block, d in zip(s.blocks, pair["student"]["depths"]):
        n_layers = len(block) - (1 if family == "vgg" else 0)  # vgg blocks end with a max-pool
        assert n_layers == d
    for block, d in zip(t.blocks, pair["teacher"]["depths"]):
        n_layers = len(block) - (1 if family == "vgg" else 0)
        assert n_layers == d


def test_block_bytes_cover_everything(family):
    pair = PAIRS[family]
    net = make_net(pair["teacher"], pair["img"])
    sizes = block_bytes(net)
    assert len(sizes) == net.num_blocks
    assert sum(sizes) == sum(t.numel() * t.element_size() for t in net.state_dict().values())


@pytest.mark.parametrize("family_,img,needle", [("vgg", 12, "image_size 12 is not divisible by 2\\^3"),
                                                ("vit", 10, "input size 10 is not divisible by patch_size 4"),
                                                ("mobilenet", 6, "image_size 6 is not divisible by 4")])
def test_geometry_hooks_stop_a_build_with_a_pwl_error(family_, img, needle):
    """The family's check_input hook (which the params schema also runs) guards the builder: a PWLError,
    i.e. exit 2 from a stage, not a traceback from inside a builder."""
    with pytest.raises(PWLError, match=needle):
        make_net(PAIRS[family_]["teacher"], img=img)
    with pytest.raises(ValueError, match=needle):
        parse_model_config(PAIRS[family_]["teacher"]).check_input(img)
    parse_model_config(PAIRS[family_]["teacher"]).check_input(PAIRS[family_]["img"])


def test_mobilenet_is_block_aligned_inverted_residuals():
    """MobileNetV2-style: one stage per block, stride at each stage's first layer, identity shortcut only where
    shapes allow; the published layout is the family's default."""
    d = MobileNetConfig()
    assert (d.widths, d.depths, d.strides, d.expand_ratio, d.head_width) == (
        (16, 24, 32, 64, 96, 160, 320), (1, 2, 3, 4, 3, 3, 1), (1, 1, 2, 2, 1, 2, 1), 6, 1280)
    raw = PAIRS["mobilenet"]["teacher"]
    net = make_net(raw, 8).eval()
    layers = [layer for block in net.blocks for layer in block]
    assert all(isinstance(layer, InvertedResidual) for layer in layers)
    assert [layer.residual for layer in layers] == [True, True, False, True, False, True]  # stem 8 -> 8: identity
    shapes = [f.shape[1:] for f in net.features(torch.randn(2, IN_CHANS, 8, 8))]
    assert shapes == [(8, 8, 8), (12, 4, 4), (16, 2, 2)]
    with pytest.raises(ValidationError, match="strides \\[1, 2\\] must give 1 or 2 for each of the 3 blocks"):
        MobileNetConfig(widths=(4, 4, 4), depths=(1, 1, 1), strides=(1, 2))


def test_family_schema_errors():
    with pytest.raises(ValidationError, match="widths has 2 entries but depths has 3"):
        VGGConfig(widths=(4, 8), depths=(1, 1, 1))
    with pytest.raises(ValidationError, match="depths \\[1, 0\\]: sizes and counts must be integers"):
        VGGConfig(widths=(4, 8), depths=(1, 0))
    with pytest.raises(ValidationError, match="not divisible by heads"):
        ViTConfig(dim=10, heads=3)
    with pytest.raises(ValidationError, match="Extra inputs"):
        VGGConfig(widths=(4,), depths=(1,), dim=3)


def test_build_mixed_and_freeze(family):
    ds = SimpleNamespace(in_chans=IN_CHANS, num_classes=NUM_CLASSES, image_size=PAIRS[family]["img"])
    mixed = build_mixed(arch_config(family), ds)
    assert mixed.num_blocks == 3
    parts = distilled_parts(mixed)
    assert set(parts) == {"student", "converters"}
    assert not any(k.startswith("teacher") for k in parts.state_dict())
    mixed.train()
    freeze(mixed.teacher)
    assert not mixed.teacher.training and not any(m.training for m in mixed.teacher.modules())
    assert not any(p.requires_grad for p in mixed.teacher.parameters())
    assert all(p.requires_grad for p in mixed.student.parameters())


def _timm_vit(raw: dict, img: int):
    from timm.models.vision_transformer import VisionTransformer
    return VisionTransformer(img_size=img, patch_size=raw["patch_size"], in_chans=IN_CHANS, num_classes=NUM_CLASSES,
                             embed_dim=raw["dim"], depth=sum(raw["depths"]), num_heads=raw["heads"],
                             mlp_ratio=raw["mlp_ratio"], class_token=True, global_pool="token")


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_vit_regrouping_equals_timm_forward(role):
    """Embedder -> grouped layers -> norm + CLS head computes exactly timm's own ViT forward."""
    raw, img = PAIRS["vit"][role], PAIRS["vit"]["img"]
    net = make_net(raw, img, seed=4).eval()
    torch.manual_seed(4)
    ref = _timm_vit(raw, img).eval()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))
    x, _ = batch("vit", n=3)
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x), atol=1e-6)


def test_vit_pretrained_file_loads_all_but_the_classifier(tmp_path):
    raw, img = PAIRS["vit"]["teacher"], PAIRS["vit"]["img"]
    torch.manual_seed(11)
    src = _timm_vit(raw, img)
    path = tmp_path / "vit.pth"
    torch.save(src.state_dict(), path)
    cfg = parse_model_config({**raw, "pretrained_file": str(path)})
    net, fresh = make_net(raw, img, seed=0), make_net(raw, img, seed=0)
    assert init_pretrained(net, cfg) == f"file:{path}"
    assert torch.equal(net.blocks[1][0].attn.qkv.weight, src.blocks[2].attn.qkv.weight)
    assert torch.equal(net.embed.pos_embed, src.pos_embed) and torch.equal(net.head.norm.weight, src.norm.weight)
    assert torch.equal(net.head.fc.weight, fresh.head.fc.weight)  # the classifier keeps its own init
    assert init_pretrained(fresh, parse_model_config(raw)) is None  # no pretrained weights named: untouched


def test_vit_pretrained_into_shallower_student_at_other_size(tmp_path):
    """A 12-layer, 3-channel, 224x224 ViT-Tiny-shaped checkpoint initialises a 6-layer student on 1-channel
    32x32 images resized to 48: every other layer, pos_embed resampled, patch filters summed over RGB."""
    src = VisionTransformer(img_size=32, patch_size=8, in_chans=3, num_classes=7, embed_dim=16, depth=12,
                            num_heads=2, mlp_ratio=2.0)
    path = tmp_path / "tiny12.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    raw = {"family": "vit", "patch_size": 8, "dim": 16, "heads": 2, "mlp_ratio": 2.0, "depths": [1] * 6,
           "input_size": 48, "pretrained_file": str(path)}
    cfg = parse_model_config(raw)
    net = build_model(cfg, in_chans=1, num_classes=5, img_size=32)
    init_pretrained(net, cfg)
    for j in range(6):  # layers 2, 4, ..., 12 of the source (indices 1, 3, ..., 11)
        assert torch.equal(net.blocks[j][0].mlp.fc1.weight, src.blocks[2 * j + 1].mlp.fc1.weight)
    assert net.embed.pos_embed.shape == (1, 1 + 36, 16)  # 48/8 = 6x6 tokens
    assert torch.allclose(net.embed.patch_embed.proj.weight, src.patch_embed.proj.weight.sum(1, keepdim=True))
    x = torch.rand(2, 1, 32, 32)
    assert net(x).shape == (2, 5)  # resized to 48x48 inside the model


def test_vit_pretrained_errors(tmp_path, monkeypatch):
    raw = {**PAIRS["vit"]["teacher"], "pretrained_file": str(tmp_path / "missing.pth")}
    net = make_net(PAIRS["vit"]["teacher"], PAIRS["vit"]["img"])
    with pytest.raises(PWLError, match="does not exist"):
        init_pretrained(net, parse_model_config(raw))
    deep = {**PAIRS["vit"]["teacher"], "depths": [4, 4, 4]}  # 12 layers from a 6-layer source: impossible
    torch.save(_timm_vit(PAIRS["vit"]["teacher"], 8).state_dict(), tmp_path / "six.pth")
    with pytest.raises(PWLError, match="fewer than the model's 12"):
        init_pretrained(make_net(deep, 8), parse_model_config({**deep, "pretrained_file": str(tmp_path / "six.pth")}))
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no internet, and no retries
    with pytest.raises(PWLError, match="(?s)could not fetch timm's pretrained weights.*pretrained_file="):
        init_pretrained(net, parse_model_config({**PAIRS["vit"]["teacher"],
                                                 "pretrained": "vit_tiny_patch16_224.augreg_in21k_ft_in1k"}))

def test_vit_attention_in_float32_changes_nothing_outside_cpu_bf16_autocast():
    """CpuBf16Attention is timm's Attention (same weights, same init draws) in float32; under CPU bf16 autocast
    it computes softmax(QK^T)V in float32 and stays close to the all-bf16 result."""
    from timm.layers.attention import Attention
    from pwl.models.vit import CpuBf16Attention
    raw, img = PAIRS["vit"]["teacher"], PAIRS["vit"]["img"]
    ours, theirs = make_net(raw, img), make_net(raw, img)
    for m in theirs.modules():
        if isinstance(m, CpuBf16Attention):
            m.__class__ = Attention
    assert any(type(m) is CpuBf16Attention for m in ours.modules())
    for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), k
    x = batch("vit")[0]
    assert torch.equal(ours(x), theirs(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_ours, z_theirs = ours(x), theirs(x)
    assert not torch.equal(z_ours, z_theirs) and torch.allclose(z_ours.float(), z_theirs.float(), atol=0.1)
