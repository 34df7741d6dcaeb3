"""The authors' recipe as params (issue 10, items 3-4): each new param validated, its default today's behaviour,
its other value what the authors' code does, and the report's item-by-item table read from the params."""
import copy
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from conftest import PAIRS, batch, make_mixed, make_net
from pwl.build import freeze
from pwl.config import AugmentConfig, LossConfig, OptimConfig, validate_params
from pwl.data import Batches, Normalizer, Split, augment, random_crop, random_flip, random_rotate
from pwl.errors import PWLError
from pwl.losses import pwl_loss
from pwl.models import init_pretrained, parse_model_config
from pwl.profile import compose
from pwl.report.recipe import ITEMS, recipe_rows
from pwl.teacher_bn import target_mixed, target_teacher
from pwl.train import Trainee, TrainingRun, fit, lr_factor, without_decay_on_norm_bias
from pwl.stage_training import TrainingStage
from test_config import VIT, minimal

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ LR schedule

def old_lr_factor(step, total, warmup, min_factor):
    """lr_factor as it was before `schedule` existed (commit 59d6206), verbatim."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup - 1)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@pytest.mark.parametrize("total,warmup,min_factor", [(100, 0, 0.001), (37, 5, 0.05), (1, 0, 0.0), (10, 3, 0.5)])
def test_cosine_schedule_is_bit_for_bit_the_old_one(total, warmup, min_factor):
    for s in range(total + 3):
        assert lr_factor(s, total, warmup, min_factor) == old_lr_factor(s, total, warmup, min_factor)
        assert lr_factor(s, total, warmup, min_factor, "cosine") == old_lr_factor(s, total, warmup, min_factor)


def test_linear_schedule_falls_in_equal_steps_to_min_factor():
    total, warmup, mf = 25, 5, 0.0
    fs = [lr_factor(s, total, warmup, mf, "linear") for s in range(total)]
    assert fs[:warmup] == [old_lr_factor(s, total, warmup, mf) for s in range(warmup)]  # the same warm-up
    assert fs[warmup] == 1.0 and fs[-1] == mf
    steps = [a - b for a, b in zip(fs[warmup:], fs[warmup + 1:])]
    assert steps == pytest.approx([1 / (total - warmup - 1)] * len(steps))


# ------------------------------------------------------------------ weight decay on biases and norms

def optimizer_groups(tmp_path, model, optim) -> list[dict]:
    """The optimiser's parameter groups as `fit` built them (read back from its resume checkpoint)."""
    def loss_fn(x, y, progress):
        z = model(x)
        return F.cross_entropy(z, y), {}, z
    x, y = batch("vgg", n=8)
    split = Split((x.clamp(-1, 1) * 127 + 128).to(torch.uint8), y)
    fit(Trainee(model, [{"params": model.parameters()}], loss_fn, lambda: {"score": 0.0}),
        TrainingRun(train=split, norm=Normalizer([0.5] * 3, [0.25] * 3), optim=optim, augment=None,
                    checkpoint=tmp_path / "ck.pt", fingerprint="f", seed=0, desc="t"))
    return torch.load(tmp_path / "ck.pt", weights_only=False)["optimizer"]["param_groups"]


def test_no_decay_off_keeps_the_one_param_group(tmp_path):
    model = make_net(PAIRS["vgg"]["teacher"], 8)
    groups = optimizer_groups(tmp_path, model, OptimConfig(epochs=1, batch_size=4))
    assert len(groups) == 1 and groups[0]["weight_decay"] == 5e-4
    assert len(groups[0]["params"]) == len(list(model.parameters()))


def test_no_decay_on_spares_biases_and_norm_weights(tmp_path):
    model = make_net(PAIRS["vit"]["teacher"], 8)
    spared = {n for n, p in model.named_parameters() if n.endswith("bias") or ".norm" in n}
    assert any(n.endswith("norm1.weight") for n in spared) and "head.norm.weight" in spared
    groups = without_decay_on_norm_bias([{"params": model.parameters(), "lr": 0.3}], model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [g["lr"] for g in groups] == [0.3, 0.3] and "weight_decay" not in groups[0]
    assert groups[1]["weight_decay"] == 0.0 and {names[id(p)] for p in groups[1]["params"]} == spared
    assert {names[id(p)] for p in groups[0]["params"]} == set(names.values()) - spared
    bn_net = make_net(PAIRS["vgg"]["teacher"], 8)  # BatchNorm weights count as norm weights too
    bn_weights = {id(m.weight) for m in bn_net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert bn_weights <= {id(p) for p in without_decay_on_norm_bias([{"params": bn_net.parameters()}], bn_net)[1]["params"]}
    fitted = optimizer_groups(tmp_path, bn_net, OptimConfig(epochs=1, batch_size=4, no_decay_norm_bias=True))
    assert [g["weight_decay"] for g in fitted] == [5e-4, 0.0]


# ------------------------------------------------------------------ augmentation

AUTHORS_AUG = dict(crop_pad_frac=0.25, flip=True, rotate_deg=30, order="rotate-flip-crop", rotate_interpolation="nearest")


def seeded(fn, x, seed=3):
    torch.manual_seed(seed)
    return fn(x)


def test_augment_applies_the_ops_in_the_configured_order():
    x = torch.rand(8, 3, 16, 16)
    ours, theirs = AugmentConfig(**{**AUTHORS_AUG, "order": "crop-flip-rotate"}), AugmentConfig(**AUTHORS_AUG)
    assert torch.equal(seeded(lambda v: augment(v, ours), x),
                       seeded(lambda v: random_rotate(random_flip(random_crop(v, ours), ours), ours), x))
    assert torch.equal(seeded(lambda v: augment(v, theirs), x),
                       seeded(lambda v: random_crop(random_flip(random_rotate(v, theirs), theirs), theirs), x))
    assert not torch.equal(seeded(lambda v: augment(v, ours), x), seeded(lambda v: augment(v, theirs), x))


def test_nearest_rotation_only_moves_pixels():
    x = torch.rand(8, 1, 16, 16)
    nearest = seeded(lambda v: random_rotate(v, AugmentConfig(rotate_deg=30, rotate_interpolation="nearest")), x)
    bilinear = seeded(lambda v: random_rotate(v, AugmentConfig(rotate_deg=30)), x)
    values = set(x.flatten().tolist()) | {0.0}
    assert set(nearest.flatten().tolist()) <= values
    assert not set(bilinear.flatten().tolist()) <= values


def test_resize_before_augmentation_is_the_vits_own_resize():
    """With nothing to augment, batches resized to the ViT's input size give the model what its own resize
    would (up to rounding: the normalisation now comes after the resize): `at_input_size` moves the resize, it
    does not change it."""
    raw = {**PAIRS["vit"]["teacher"], "input_size": 12}
    net = make_net(raw, 8).eval()
    x, y = batch("vit", n=4)
    split = Split((x.clamp(-1, 1) * 127 + 128).to(torch.uint8), y)
    norm, still = Normalizer([0.5] * 3, [0.25] * 3), AugmentConfig(crop_pad_frac=0, flip=False, rotate_deg=0)
    (stored, _), = Batches(split, 4, norm, still).epoch(0)
    (resized, _), = Batches(split, 4, norm, still, resize_to=12).epoch(0)
    assert stored.shape[-1] == 8 and resized.shape[-1] == 12
    with torch.no_grad():
        assert torch.allclose(net(stored), net(resized), atol=1e-6)


def test_augment_size_is_the_models_input_size_only_when_asked():
    raw = minimal()
    raw["arch"]["v"] = {"teacher": {**PAIRS["vit"]["teacher"], "input_size": 16},
                        "student": {**PAIRS["vit"]["student"], "input_size": 16},
                        "train_teacher": {}, "train_student": {}, "distill": {"optim": {}}, "kd": {"optim": {}}}
    for at, want in ((False, None), (True, 16)):
        raw["augment"] = {"at_input_size": at}
        p = validate_params(raw)
        stage = SimpleNamespace(params=p, cfg=p.arch["v"])
        assert [TrainingStage.augment_size(stage, r) for r in ("teacher", "student", "pwl")] == [want] * 3
    vgg = validate_params({**minimal(), "augment": {"at_input_size": True}})  # no resize: nothing to move
    assert TrainingStage.augment_size(SimpleNamespace(params=vgg, cfg=vgg.arch["v"]), "teacher") is None


# ------------------------------------------------------------------ the frozen teacher's BatchNorm

def distill_step(mixed, mode: str):
    """One SGD step of PWL distillation with `teacher_bn: mode`; returns the loss and the target mixed model."""
    targets = target_mixed(mixed, mode)
    opt = torch.optim.SGD(list(mixed.student.parameters()) + list(mixed.converters.parameters()), lr=0.1)
    x, y = batch("vgg", n=8)
    loss, _, _ = pwl_loss(targets, x, y, LossConfig(cross_mode="all"), random.Random(0))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), targets


def teacher_state(mixed):
    return {k: v.clone() for k, v in mixed.teacher.state_dict().items()}


def test_teacher_bn_eval_leaves_the_teacher_as_it_is():
    mixed = make_mixed("vgg")
    freeze(mixed.teacher)
    before = teacher_state(mixed)
    _, targets = distill_step(mixed, "eval")
    assert targets is mixed and not mixed.teacher.training
    assert all(torch.equal(before[k], v) for k, v in mixed.teacher.state_dict().items())


def test_teacher_bn_train_drifts_a_copy_and_keeps_the_trained_teacher():
    mixed, ref = make_mixed("vgg"), make_mixed("vgg")
    freeze(mixed.teacher), freeze(ref.teacher)
    before = teacher_state(mixed)
    loss_train, targets = distill_step(mixed, "train")
    loss_eval, _ = distill_step(ref, "eval")
    assert loss_train != loss_eval  # the targets come from batch statistics
    drifted = targets.teacher.state_dict()
    assert targets.teacher.training and targets.student is mixed.student and targets.converters is mixed.converters
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(not torch.equal(drifted[k], before[k]) for k in stats)  # statistics drift ...
    params = dict(targets.teacher.named_parameters())
    assert all(torch.equal(p, before[k]) and p.grad is None for k, p in params.items())  # ... weights do not
    # the trained teacher (validation's and evaluate's all-T) is untouched, and still in eval mode
    assert not mixed.teacher.training
    assert all(torch.equal(before[k], v) for k, v in mixed.teacher.state_dict().items())


def test_kd_teacher_follows_teacher_bn():
    teacher = freeze(make_net(PAIRS["vgg"]["teacher"], 8))
    assert target_teacher(teacher, "eval") is teacher
    copy_ = target_teacher(teacher, "train")
    assert copy_ is not teacher and copy_.training and not teacher.training
    assert all(not p.requires_grad for p in copy_.parameters())


# ------------------------------------------------------------------ the ViT's final LayerNorm

def test_final_norm_off_feeds_the_raw_class_token_to_the_classifier():
    raw, img = PAIRS["vit"]["teacher"], PAIRS["vit"]["img"]
    on, off = make_net(raw, img, seed=2).eval(), make_net({**raw, "final_norm": False}, img, seed=2).eval()
    assert isinstance(on.head.norm, torch.nn.LayerNorm) and isinstance(off.head.norm, torch.nn.Identity)
    assert set(on.state_dict()) - set(off.state_dict()) == {"head.norm.weight", "head.norm.bias"}
    assert all(torch.equal(v, on.state_dict()[k]) for k, v in off.state_dict().items())  # same init otherwise
    x, _ = batch("vit", n=3)
    with torch.no_grad():
        f = off.features(x)[-1]
        assert torch.equal(off(x), off.head.fc(f[:, 0]))
        assert torch.equal(on(x), on.head.fc(on.head.norm(f)[:, 0]))
        assert not torch.allclose(on(x), off(x))


def test_final_norm_off_loads_pretrained_weights_without_the_norm(tmp_path):
    raw = PAIRS["vit"]["teacher"]
    src = VisionTransformer(img_size=8, patch_size=4, in_chans=3, num_classes=5, embed_dim=16, depth=6,
                            num_heads=2, mlp_ratio=2.0)
    torch.save(src.state_dict(), tmp_path / "vit.pth")
    cfg = parse_model_config({**raw, "final_norm": False, "pretrained_file": str(tmp_path / "vit.pth")})
    net = make_net({**raw, "final_norm": False}, 8)
    init_pretrained(net, cfg)
    assert torch.equal(net.blocks[0][0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


# ------------------------------------------------------------------ validation

NEW_PARAMS = [
    ("augment.order", "flip-crop-rotate", "order: Input should be 'crop-flip-rotate' or 'rotate-flip-crop'"),
    ("augment.rotate_interpolation", "bicubic", "rotate_interpolation: Input should be 'bilinear' or 'nearest'"),
    ("augment.at_input_size", "sometimes", "at_input_size: Input should be a valid boolean"),
    ("arch.v.train_teacher.schedule", "step", "train_teacher.schedule: Input should be 'cosine' or 'linear'"),
    ("arch.v.distill.optim.no_decay_norm_bias", "maybe", "no_decay_norm_bias: Input should be a valid boolean"),
    ("arch.v.distill.teacher_bn", "frozen", "distill.teacher_bn: Input should be 'eval' or 'train'"),
    ("arch.v.train_student.clip_grad_norm", -1, "clip_grad_norm: Input should be greater than or equal to 0"),
    ("arch.v.distill.loss.mixed_bn_stats", "train", "mixed_bn_stats: Input should be 'freeze', 'eval' or 'update'"),
]


@pytest.mark.parametrize("path,value,needle", NEW_PARAMS, ids=[n[0] for n in NEW_PARAMS])
def test_new_params_fail_with_a_clear_message(path, value, needle):
    raw = minimal()
    *parents, last = path.split(".")
    node = raw
    for k in parents:
        node = node.setdefault(k, {})
    node[last] = value
    with pytest.raises(PWLError) as err:
        validate_params(raw, "test.yaml")
    assert needle in str(err.value), str(err.value)


def test_final_norm_must_be_a_boolean():
    raw = minimal()
    raw["arch"]["v"] = copy.deepcopy(VIT)
    raw["arch"]["v"]["student"]["final_norm"] = "sometimes"
    with pytest.raises(PWLError, match="arch.v.student.final_norm: Input should be a valid boolean"):
        validate_params(raw)


# ------------------------------------------------------------------ profiles and the report's table

def test_the_default_profile_keeps_todays_behaviour(tmp_path):
    p = compose("default", out=tmp_path / "p.yaml", conf=REPO / "conf")
    assert p.augment.model_dump(include={"order", "rotate_interpolation", "at_input_size"}) == \
        AugmentConfig().model_dump(include={"order", "rotate_interpolation", "at_input_size"})
    for a in p.arch.values():
        assert a.distill.teacher_bn == "eval"
        for o in (a.train_teacher, a.train_student, a.distill.optim):
            assert (o.schedule, o.no_decay_norm_bias) == ("cosine", False)
        for m in (a.teacher, a.student):
            assert getattr(m, "final_norm", True)


@pytest.mark.parametrize("profile", ["paper-cifar10", "paper-cifar100"])
def test_paper_profiles_emulate_every_item_a_param_offers_but_the_bug(tmp_path, profile):
    p = compose(profile, out=tmp_path / "p.yaml", conf=REPO / "conf")
    emulated = {r["item"]: r["emulated"] for r in recipe_rows(p)}
    kept = {"ViT final LayerNorm (teacher, student)", "checkpoint selection"}
    assert {k for k, v in emulated.items() if v != "yes"} == kept, emulated
    vit = p.arch["vit"]
    assert vit.distill.optim.optimizer == "sgd" and vit.train_teacher.min_lr == 0.0
    assert all(o.clip_grad_norm == 1.0 for a in map(p.arch.get, p.archs)
               for o in (a.train_teacher, a.train_student, a.distill.optim))


def test_recipe_rows_read_ours_from_the_params():
    raw = minimal()
    raw["archs"] = ["v", "w"]
    raw["arch"]["w"] = copy.deepcopy(raw["arch"]["v"])
    raw["arch"]["w"]["distill"]["teacher_bn"] = "train"
    rows = {r["item"]: r for r in recipe_rows(validate_params(raw))}
    teacher = rows["frozen teacher's BatchNorm while distilling (`teacher_bn`)"]
    assert teacher["ours"] == "v: eval; w: train" and teacher["emulated"] == "partly (w)" and teacher["why"]
    clip = rows["gradient clip, max norm (teacher / student / distillation)"]
    assert clip["ours"] == "off / off / off" and clip["emulated"] == "no"
    assert clip["authors"].startswith("1 / 1 / 1 (")
    vit_only = rows["ViT final LayerNorm (teacher, student)"]
    assert (vit_only["ours"], vit_only["emulated"], vit_only["why"]) == ("-", "n/a", "")
    assert len(rows) == len(ITEMS)
